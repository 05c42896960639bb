"""A node lost mid-phase: Ray retries its tasks and restarts its actors on the nodes left, so most phases go on
by themselves. An actor pool whose resources only the lost node had (a GPU node, a custom resource) would wait
for a node that may never come: Ray keeps its actors pending and the run hangs. Without an autoscaler the phase
ends instead, once no live node has been able to place the pool for ``ray.lost_node_wait_s``, in one line naming
the pool and what it needs; the same command, after such a node joins, resumes from the last committed unit. With
``ray.autoscaling: true`` the run waits for the autoscaler.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from pipelines.config import ConfigError, RayConfig
from pipelines.run.cluster import Pool, check_pools, cluster_nodes

POLL_S = 2.0


class NodeLost(RuntimeError):
    """A pool of the running phase fits no live node any more; the message is one line and says to rerun."""


def unplaceable(phase: str, pools: list[Pool], nodes: list[dict[str, float]]) -> str | None:
    """Why ``pools`` cannot start on ``nodes`` (the cluster check's reasons, one line), or None."""
    try:
        check_pools(phase, pools, nodes)
    except ConfigError as exc:
        return "; ".join(line.strip() for line in str(exc).splitlines()[1:])
    return None


@contextmanager
def watched(phase: str, pools: list[Pool], config: RayConfig,
            nodes: Callable[[], list[dict[str, float]]] = cluster_nodes, poll_s: float = POLL_S) -> Iterator[None]:
    """Raise NodeLost in the main thread when ``pools`` have fit no live node (``nodes()``: each live node's
    resources) for ``config.lost_node_wait_s`` during the block. Watches nothing with autoscaling, without pools,
    or outside the main thread (no signal can reach it)."""
    wait_s = config.lost_node_wait_s
    if config.autoscaling or not pools or threading.current_thread() is not threading.main_thread():
        yield
        return
    stop, found = threading.Event(), []

    def watch() -> None:
        since = None
        while not stop.wait(poll_s):
            problem = unplaceable(phase, pools, nodes())
            since = (since or time.monotonic()) if problem else None
            if problem and time.monotonic() - since >= wait_s:
                found.append(problem)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)  # wakes a blocking wait
                return

    def handler(_signum: int, _frame: object) -> None:
        raise NodeLost(f"a node left the cluster during {phase} and for {wait_s:.0f} s no live node could run "
                       f"it ({found[0]}); add such a node, then rerun the same command: committed units are kept")

    previous = signal.signal(signal.SIGUSR1, handler)
    watcher = threading.Thread(target=watch, name=f"nodeloss-{phase}", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, previous)
