"""What a run prints: one progress bar per phase, warnings and the summary; everything else goes to a file.

Ray Data logs every plan, operator and scheduler event to the console (about 300 lines for the demo),
and Ray forwards every worker's output. By default both go to ``RUN/logs/thresher.log`` instead
(Ray's own session logs stay under its temp dir); ``-v`` puts them back on the console. So do the
lines Ray's C++ core worker writes to this process's stderr, less those known to be noise.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from tqdm import tqdm

LOG_FILE = Path("logs") / "thresher.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "thresher-console"


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "warning: " if record.levelno == logging.WARNING else "error: " if record.levelno > logging.WARNING else ""
        return prefix + record.getMessage()


class _LogFile(logging.FileHandler):
    """The run's log file. On a full volume a line that cannot be written is dropped, not turned into a
    traceback on the console per record (logging's default): the run ends in the one-line disk-full message."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        failed = sys.exc_info()[1]
        if isinstance(failed, OSError) and failed.errno == errno.ENOSPC:
            return
        super().handleError(record)


def setup(run_root: Path | None, verbose: bool = False) -> Path | None:
    """Route logging for this process; returns the log file (None without a run directory yet).

    Call before Ray starts and again when the run directory is known; calling it twice replaces the handlers.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "name", None) == _OURS]:
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.set_name(_OURS)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(_ConsoleFormatter())
    handlers: list[logging.Handler] = [console]
    path = None
    if run_root is not None:
        path = Path(run_root) / LOG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        to_file = _LogFile(path, encoding="utf-8")
        to_file.set_name(_OURS)
        to_file.setLevel(logging.DEBUG)
        to_file.setFormatter(logging.Formatter(_FORMAT))
        handlers.append(to_file)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    _route_ray_data(handlers, verbose)
    return path


def _route_ray_data(handlers: list[logging.Handler], verbose: bool) -> None:
    """Ray's loggers keep their own console handlers and do not propagate: without ``-v`` they write to our
    file only (their warnings too: "progress bars disabled", token auth, ... are about Ray, not the data)."""
    import ray.data

    files = [h for h in handlers if isinstance(h, logging.FileHandler)]
    for name in ("ray", "ray.data"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            ours = getattr(handler, "name", None) == _OURS
            to_console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            if ours or (to_console and not verbose):
                logger.removeHandler(handler)
        for handler in files:
            logger.addHandler(handler)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = verbose  # the phases draw one bar each
    context.print_on_execution_start = verbose


OWN_BARS = ("ingest", "score", "export")  # phases that draw a bar of their units or shards themselves


def phase(name: str, func: Callable[..., dict], *args: Any, idle: str | None = None, **kwargs: Any) -> dict:
    """Run one phase; one that draws no bar of its own (dedup, decide, caption) gets a one-step bar with its
    time, so the console shows one line per phase; one with nothing to do (``idle`` says why) gets that line."""
    if idle is not None:
        print(f"{name}: nothing to do ({idle})")
        return func(*args, **kwargs)
    if name in OWN_BARS:
        return func(*args, **kwargs)
    with tqdm(total=1, desc=name, bar_format="{l_bar}{bar}| [{elapsed}]") as bar:
        result = func(*args, **kwargs)
        bar.update(1)
    return result


# Lines of Ray's C++ core worker that say nothing about the run: they go to the log file only.
KNOWN_NOISE = (
    # Ray Data keeps each actor pool's map transformer in the object store, and Ray warns once per pool
    # that such an actor's restart could fail (ray-project/ray#53727); our constructor arguments are plain.
    b"has constructor arguments in the object store and max_restarts > 0",
)
_QUIET = "--quiet"  # the tee's flag: every line to the log file, none to the console
_DRAIN_S = 10.0  # how long the end of a run waits for the last native lines to reach the file


@contextmanager
def native_stderr(run_root: Path | None, verbose: bool = False, show: bool = True) -> Iterator[None]:
    """While Ray works, send what native code writes to this process's fd 2 to ``RUN/logs/thresher.log``.

    Ray's C++ core worker in the driver writes every ERROR line to fd 2 as well as to its session log;
    Ray's settings can send all its lines there (``RAY_LOG_TO_STDERR``) or drop the errors from its log
    as well (``RAY_BACKEND_LOG_LEVEL``), but not move them to a file. So fd 2 becomes a pipe to a small
    process (``_tee``) that copies each line to the log file and shows on the console all but
    ``KNOWN_NOISE``: an unknown error or a fatal check still shows, and a separate process still
    drains the pipe when this one aborts. Python's stderr (bars, warnings, tracebacks) keeps writing to the console. ``-v`` changes
    nothing. ``show=False`` keeps every native line off the console: while Ray starts, a failure is an
    exception that says it in one line, and the lines it printed while retrying stay in the file.
    """
    if verbose or run_root is None:
        yield
        return
    path = Path(run_root) / LOG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    tee = subprocess.Popen([sys.executable, __file__, str(path), *([] if show else [_QUIET])], stdin=subprocess.PIPE)
    assert tee.stdin is not None
    console_fd = os.dup(2)
    os.dup2(tee.stdin.fileno(), 2)
    tee.stdin.close()  # fd 2 is now this process's only end of the pipe: restoring it ends the tee
    python_stderr = None
    try:
        python_stderr = _python_stderr_to(console_fd)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(console_fd, 2)
        os.close(console_fd)
        if python_stderr is not None:
            original, copy = python_stderr
            _point_stderr(copy, original)
            copy.close()
        try:
            tee.wait(timeout=_DRAIN_S)
        except subprocess.TimeoutExpired:  # a child of ours still holds the pipe; the tee ends with it
            logging.getLogger(__name__).warning("native log lines still pending after %.0f s: %s", _DRAIN_S, path)


def _python_stderr_to(console_fd: int) -> tuple[IO[str], IO[str]] | None:
    """Point ``sys.stderr`` (and the log handlers that write to it) at a copy of the console; returns the
    stream it replaced and the copy, or None where ``sys.stderr`` is not fd 2 (pytest's capture, a file)."""
    try:
        if sys.stderr.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    original = sys.stderr
    copy = os.fdopen(os.dup(console_fd), "w", buffering=1, encoding=original.encoding, errors=original.errors)
    _point_stderr(original, copy)
    return original, copy


def _point_stderr(old: IO[str], new: IO[str]) -> None:
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    for handler in (h for logger in loggers for h in logger.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream is old:
            try:
                handler.setStream(new)
            except AttributeError:  # its stream is sys.stderr read at each write (logging.lastResort)
                pass
    sys.stderr = new


def _tee(source: IO[bytes], log: IO[bytes], console: IO[bytes] | None,
         noise: tuple[bytes, ...] = KNOWN_NOISE) -> None:
    """Copy each line of ``source`` to ``log``, and to ``console`` too (if any) unless it contains known noise."""
    show = console is not None
    for line in iter(source.readline, b""):
        log.write(line)
        log.flush()
        if show and not any(pattern in line for pattern in noise):
            try:
                console.write(line)
                console.flush()
            except OSError:  # the console went away (a closed pipe): keep filling the log
                show = False


if __name__ == "__main__":  # the tee of ``native_stderr``, run as ``python console.py LOG``
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the driver; this drains its last lines
    with open(sys.argv[1], "ab") as log_file:
        _tee(sys.stdin.buffer, log_file, None if _QUIET in sys.argv[2:] else sys.stderr.buffer)
