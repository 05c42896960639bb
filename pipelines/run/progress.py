"""Progress in rows for phases whose tasks each work a whole unit (10,000 rows by default).

A bar counting units shows 0/1 for the whole of a small crawl. Instead each ingest task reports its rows as
they finish to one ``RowCounter`` actor (counts only, no rows; at most one call per ``REPORT_S`` per task),
and a thread of the driver redraws the bar from it: rows done, rows/s, and failures so far.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import ray
from tqdm import tqdm

from manifests.schema import Status

REPORT_S = 0.5  # how often a task sends its counts, and the driver redraws the bar
READ_TIMEOUT_S = 10.0  # a counter that does not answer (a cluster going down) skips a redraw, never hangs the run


@ray.remote(num_cpus=0)
class RowCounter:
    """Rows done and failed, summed over every task of a phase."""

    def __init__(self) -> None:
        self.done, self.failed = 0, 0

    def add(self, done: int, failed: int) -> None:
        self.done += done
        self.failed += failed

    def read(self) -> tuple[int, int]:
        return self.done, self.failed


class RowReporter:
    """A task's side: called with each row's final status; sends the counts every ``REPORT_S`` and on ``flush``."""

    def __init__(self, counter: ray.actor.ActorHandle | None) -> None:
        self.counter, self.done, self.failed, self.sent = counter, 0, 0, time.monotonic()

    def __call__(self, status: str) -> None:
        self.done += 1
        self.failed += status != Status.SUCCESS
        if time.monotonic() - self.sent >= REPORT_S:
            self.flush()

    def flush(self) -> None:
        if self.counter is not None and self.done:
            self.counter.add.remote(self.done, self.failed)
        self.done, self.failed, self.sent = 0, 0, time.monotonic()


@contextmanager
def row_bar(desc: str, total: int | None) -> Iterator[ray.actor.ActorHandle]:
    """A bar of rows fed by a ``RowCounter`` (yielded, for the tasks); the last counts are drawn on exit."""
    counter = RowCounter.remote()
    stop = threading.Event()
    with tqdm(total=total, desc=desc, unit="row") as bar:
        def draw() -> None:
            try:
                done, failed = ray.get(counter.read.remote(), timeout=READ_TIMEOUT_S)
            except ray.exceptions.RayError:  # a timeout or a lost actor: a bar never fails a run
                return
            bar.n = done if bar.total is None else min(done, bar.total)  # a restarted task counts again
            bar.set_postfix_str(f"failed {failed}", refresh=False)
            bar.refresh()

        def poll() -> None:
            while not stop.wait(REPORT_S):
                draw()

        thread = threading.Thread(target=poll, name="thresher-progress", daemon=True)
        thread.start()
        try:
            yield counter
        finally:
            stop.set()
            thread.join()
            draw()
            ray.kill(counter)
