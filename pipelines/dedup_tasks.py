"""Ray tasks for the partitioned dedup phase: ``dedup.partitioned`` plans, this module runs.

Each call gets a list of independent tasks (one bucket or one input file each) and returns their
small results (counts, fingerprints, samples); the rows stay in the bucket files the tasks write on
the shared run directory. Ray places and retries the tasks; nothing here schedules.
"""

from __future__ import annotations

from typing import Any, Callable

import ray

from dedup.partitioned import run_partitioned
from dedup.run import run_dedup
from dedup.config import DedupConfig
from manifests.layout import RunLayout

TASK_CPUS = 1.0  # each task is one Polars/numpy pipeline; Polars may use more threads for a moment


def ray_tasks(fn: Callable[..., Any], args: list[tuple]) -> list[Any]:
    """Run ``fn(*a)`` for every ``a`` as a Ray task; results in the order of ``args``."""
    remote = ray.remote(num_cpus=TASK_CPUS, max_retries=3)(fn)
    return ray.get([remote.remote(*a) for a in args])


def run(config: DedupConfig, layout: RunLayout, eligible=None) -> dict:
    """The dedup phase: partitioned on the cluster unless ``dedup.partitions.enabled`` is false."""
    if config.partitions.enabled:
        return run_partitioned(config, layout, eligible, tasks=ray_tasks)
    return run_dedup(config, layout, eligible)
