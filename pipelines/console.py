"""What a run prints: one progress bar per phase, warnings and the summary; everything else goes to a file.

Ray Data logs every plan, operator and scheduler event to the console (about 300 lines for the demo),
and Ray forwards every worker's output. By default both go to ``RUN/logs/thresher.log`` instead
(Ray's own session logs stay under its temp dir); ``-v`` puts them back on the console.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

LOG_FILE = Path("logs") / "thresher.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "thresher-console"


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "warning: " if record.levelno == logging.WARNING else "error: " if record.levelno > logging.WARNING else ""
        return prefix + record.getMessage()


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
        to_file = logging.FileHandler(path, encoding="utf-8")
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


def phase(name: str, func: Callable[..., dict], *args: Any, **kwargs: Any) -> dict:
    """Run one phase; one that draws no bar of its own (dedup, decide, caption) gets a one-step bar, so the
    console shows one line per phase."""
    if name in OWN_BARS:
        return func(*args, **kwargs)
    with tqdm(total=1, desc=name, unit="phase") as bar:
        result = func(*args, **kwargs)
        bar.update(1)
    return result
