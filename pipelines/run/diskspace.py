"""A full output volume ends a run in one line naming the path, what is free and about what the run needs.

The error reaches the driver in many wrappers (an OSError in the driver, a Ray task's or a Ray Data UDF's
exception carrying the worker's traceback), so it is recognised by errno where there is one and by the
message otherwise. Nothing committed is damaged: every file is written under a temporary name and renamed,
so a rerun after space is freed resumes from the last committed unit.
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from typing import Iterator

from manifests.layout import PHASE_NAMES, RunLayout

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"


class DiskFull(RuntimeError):
    """The run's volume filled up; the message names it, what is free and an estimate of what is needed."""


def is_disk_full(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if NO_SPACE in str(current):
            return True
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return False


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def needed_bytes(layout: RunLayout) -> int | None:
    """About the bytes the unfinished ingest still writes: the mean committed staged tar x the units left."""
    units = list(layout.units_dir.glob("*.parquet")) if layout.units_dir.exists() else []
    tars = [p for p in layout.staged_tars() if p.with_suffix(".parquet").exists()] if layout.staged_dir.exists() else []
    if not units or not tars:
        return None
    mean = sum(p.stat().st_size for p in tars) / len(tars)
    return int(mean * (len(units) - len(tars)))


def message(layout: RunLayout) -> str:
    volume = next(p for p in (layout.root.absolute(), *layout.root.absolute().parents) if p.exists())
    usage = shutil.disk_usage(volume)  # the run directory itself may not be made yet
    phase = next((p for p in PHASE_NAMES if not layout.is_done(p)), "export")
    staged = sum(p.stat().st_size for p in layout.staged_tars()) if layout.staged_dir.exists() else 0
    need = needed_bytes(layout) if phase == "ingest" else staged  # export rewrites up to the staged bytes
    hint = f"; the {phase} phase needs about {_mb(need)} more" if need else ""
    return (f"no space left on the volume of {layout.root} during {phase}: {_mb(usage.free)} free of "
            f"{_mb(usage.total)}{hint}. Free space or move output_dir, then rerun the same command: committed "
            f"units are intact and are not redone")


@contextmanager
def reported(layout: RunLayout) -> Iterator[None]:
    """Turn a full volume, however wrapped, into DiskFull with the one-line message."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unchanged unless it is a full disk
        if not is_disk_full(exc):
            raise
        raise DiskFull(message(layout)) from None


