"""One driver per run directory: ``RUN/.lock`` names who holds it, and a dead holder's lock is taken over.

Two ``thresher run`` on one directory would write the same units and markers under each other. The lock
is created atomically (a hard link of a fully written file: never seen half-written, and ``link`` fails
when the name exists, also on NFS), holds host, pid, the pid's start time and since when, and is
refreshed every ``HEARTBEAT_S`` by a daemon thread. A lock is stale when its holder is on this host and
that process is gone (or the pid was reused: the start time differs), or, held from another host (a
pod on a shared volume), when it was not refreshed for ``STALE_AFTER_S``. A stale lock is renamed
away, then the new one is linked in; the holder removes its lock at exit.

Taking over is a read, a judgement and a rename: without a guard, of several drivers that read the same
stale lock, a late one could rename away the fresh lock an early one had just linked, and two would win.
So every acquisition runs under a kernel lock (``flock`` on the run directory, or on ``.lock.guard``
where the file system refuses that, as NFS does): the kernel drops it when its process dies, so the guard
itself never goes stale, and it is held only for the few system calls of one acquisition.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

LOCK_NAME = ".lock"
GUARD_NAME = ".lock.guard"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0  # 10 missed heartbeats: a driver on another host that stopped refreshing is gone
_held: dict[Path, threading.Event] = {}


class RunLocked(RuntimeError):
    """Another live driver holds the run directory."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _start_time(os.getpid()),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _read(lock: Path) -> dict | None:
    try:
        return json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable or torn by a crashed writer: judged by its age alone


def is_stale(holder: dict, age_s: float, host: str = "") -> bool:
    """Whether ``holder``'s lock (last refreshed ``age_s`` ago) belongs to a driver that is gone."""
    if holder.get("host") == (host or socket.gethostname()) and isinstance(holder.get("pid"), int):
        started = _start_time(holder["pid"])
        return started is None or (holder.get("pid_start") is not None and started != holder["pid_start"])
    return age_s > STALE_AFTER_S


def describe(holder: dict, age_s: float) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('since', '?')} "
            f"(last seen {age_s:.0f} s ago)")


def acquire(root: Path) -> None:
    """Hold ``root``'s lock for the rest of this process, or raise RunLocked naming the live holder."""
    root, me = Path(root).resolve(), _me()
    lock = root / LOCK_NAME
    if root in _held:
        return  # this process holds it already (a second phase of the same command, or tests)
    mine = root / f"{LOCK_NAME}.{me['host']}.{me['pid']}"
    try:
        mine.write_text(json.dumps(me))  # inside the try: a full volume must not leave it behind
        with _guard(root):
            while True:
                try:
                    os.link(mine, lock)
                    break
                except FileExistsError:
                    pass
                _take_over_if_stale(lock, root)
    finally:
        mine.unlink(missing_ok=True)
    _held[root] = _heartbeat(lock)
    atexit.register(release, root)


@contextlib.contextmanager
def _guard(root: Path):
    """Hold the kernel lock that makes one acquisition of ``root`` at a time."""
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # NFS emulates flock with byte-range locks, which need a file open for writing
        os.close(fd)
        fd = os.open(root / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
    try:
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _take_over_if_stale(lock: Path, root: Path) -> None:
    holder = _read(lock)
    if holder is None:
        return  # released meanwhile: link again
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
        raise RunLocked(f"{root} is locked by this very process; release it first")
    if not is_stale(holder, age):
        raise RunLocked(f"{root} is in use by another thresher run: {describe(holder, age)}. Wait for it to end, "
                        f"or stop it; if it is gone (a lost machine), its lock goes stale {STALE_AFTER_S:.0f} s "
                        f"after its last heartbeat, or remove {lock}")
    stale = root / f"{LOCK_NAME}.stale.{os.getpid()}"
    try:
        os.rename(lock, stale)  # atomic: of two takers, one moves the stale lock, the other finds nothing
    except FileNotFoundError:
        return
    if _read(stale) != holder:  # a third driver linked a fresh lock between our read and rename: give it back
        try:
            os.link(stale, lock)
        except FileExistsError:
            pass
    stale.unlink(missing_ok=True)


def _heartbeat(lock: Path) -> threading.Event:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(lock)
            except FileNotFoundError:
                return

    threading.Thread(target=beat, name="thresher-run-lock", daemon=True).start()
    return stop


def release(root: Path) -> None:
    """Drop this process's lock on ``root`` (at exit; a crash leaves it to be taken over as stale)."""
    root = Path(root).resolve()
    stop = _held.pop(root, None)
    if stop is None:
        return
    stop.set()
    lock = root / LOCK_NAME
    holder = _read(lock)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


def release_all() -> None:
    """Drop every lock this process holds (a long-lived process, e.g. a test session, between runs)."""
    for root in list(_held):
        release(root)
