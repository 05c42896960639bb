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
    finally:
        signal.signal(signal.SIGTERM, previous)
