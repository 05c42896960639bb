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
from dedup.run import run_dedup
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


def run(config: DedupConfig, layout: RunLayout, eligible: pl.DataFrame | None = None) -> dict:
    """The dedup phase: partitioned on the cluster unless ``dedup.partitions.enabled`` is false."""
    if not config.partitions.enabled:
        return run_dedup(config, layout, eligible)
    tasks = RayTasks()
    return {**run_partitioned(config, layout, eligible, tasks=tasks), "task_nodes": sorted(tasks.nodes)}


def run_with_eligibility(config: RunConfig, layout: RunLayout) -> dict:
    """The partitioned dedup phase, eligibility decided per ingest unit by tasks (no row on the driver)."""
    from pipelines.run.decide_tasks import eligible_unit

    shutil.rmtree(layout.dedup_eligible_dir, ignore_errors=True)
    tasks = RayTasks()
    if config.dedup.enabled_detectors():  # no detector: nothing to rank, run_partitioned clears the outputs
        units = [p.stem for p in layout.staged_row_files()]
        tasks(eligible_unit, [(str(layout.root), u, config.filters) for u in units])
    return {**run_partitioned(config.dedup, layout, None, tasks=tasks), "task_nodes": sorted(tasks.nodes)}
