"""SIGTERM (Kubernetes' eviction, a spot preemption, ``kill``) stops a driver cleanly: the phase is abandoned
where it is, nothing committed is touched (every file is written under a temporary name and renamed), Ray and
the run lock are released at exit, and the same command resumes from the last committed unit."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator


class Preempted(BaseException):
    """The driver got SIGTERM. A BaseException, so no per-sample ``except Exception`` records it as a row."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by the signal


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into Preempted in the main thread for the duration of the block. Enter it after
    ``ray.init``: Ray's core worker installs a handler that aborts the driver (exit -6, a C++ stack dump),
    and the last handler installed wins."""
    def handler(signum: int, _frame: object) -> None:
        raise Preempted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    except Exception as exc:  # re-raised unchanged unless it wraps the signal's Preempted
        found = preempted_in(exc)
        if found is None:
            raise
        raise found from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def preempted_in(exc: BaseException) -> Preempted | None:
    """The Preempted that ``exc`` wraps, if any. Raised inside ``ray.get``, the handler's exception comes back
    as a SystemError caused by it (Ray's signal check runs the handler within Cython code that returns a value)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Preempted):
            return current
        current = current.__cause__ or current.__context__
    return None
