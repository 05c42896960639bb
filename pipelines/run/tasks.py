"""Ray tasks for the partitioned dedup phase: ``dedup.partitioned`` plans, this module runs.

Each call gets a list of independent tasks (one bucket or one input file each) and returns their
small results (counts, fingerprints, samples); the rows stay in the bucket files the tasks write on
the shared run directory. Ray places and retries the tasks; nothing here schedules.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any, Callable

import polars as pl
import ray

from dedup.config import DedupConfig
from dedup.partitioned import run_partitioned
from dedup.plan import Tasks, local_tasks
from manifests.layout import RunLayout

if TYPE_CHECKING:
    from pipelines.config import RunConfig

TASK_CPUS = 1.0  # each task is one Polars/numpy pipeline; Polars may use more threads for a moment


def _located(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    return ray.get_runtime_context().get_node_id(), fn(*args)


class RayTasks:
    """Runs ``fn(*a)`` for every ``a`` as a Ray task, results in the order of ``args``; remembers the
    nodes the tasks ran on. SPREAD: a step's buckets read and write across every node's disks and NICs."""

    def __init__(self) -> None:
        self.nodes: set[str] = set()

    def __call__(self, fn: Callable[..., Any], args: list[tuple], num_gpus: float = 0.0) -> list[Any]:
        remote = ray.remote(num_cpus=TASK_CPUS, num_gpus=num_gpus, max_retries=3, scheduling_strategy="SPREAD")(_located)
        found = ray.get([remote.remote(fn, *a) for a in args])
        self.nodes.update(node for node, _ in found)
        return [result for _, result in found]


def _executor(config: DedupConfig) -> tuple[DedupConfig, Tasks]:
    """Ray tasks on the cluster; with ``dedup.partitions.enabled`` false, the same tasks one after another in
    this process, one bucket per shuffle unless ``partitions.buckets`` sets a count (a small run's tasks each
    hold the whole of a shuffle: fewer files, the same pairs and survivors)."""
    if config.partitions.enabled:
        return config, RayTasks()
    if config.partitions.buckets is None:
        config = config.model_copy(update={"partitions": config.partitions.model_copy(update={"buckets": 1})})
    return config, local_tasks


def _nodes(tasks: Tasks) -> list[str]:
    return sorted(tasks.nodes) if isinstance(tasks, RayTasks) else []


def run(config: DedupConfig, layout: RunLayout, eligible: pl.DataFrame | None = None) -> dict:
    """The dedup engine on ``eligible`` (sample_id, eligible) as one frame: tests and benches."""
    config, tasks = _executor(config)
    return {**run_partitioned(config, layout, eligible, tasks=tasks), "task_nodes": _nodes(tasks)}


def run_with_eligibility(config: RunConfig, layout: RunLayout) -> dict:
    """The dedup phase: eligibility decided per ingest unit by tasks (no row on the driver), then the engine."""
    from pipelines.run.decide_tasks import eligible_unit

    dedup, tasks = _executor(config.dedup)
    shutil.rmtree(layout.dedup_eligible_dir, ignore_errors=True)
    if dedup.enabled_detectors():  # no detector: nothing to rank, run_partitioned clears the outputs
        units = [p.stem for p in layout.staged_row_files()]
        tasks(eligible_unit, [(str(layout.root), u, config.filters) for u in units])
    return {**run_partitioned(dedup, layout, None, tasks=tasks), "task_nodes": _nodes(tasks)}
