"""On a local cluster, scale stage CPU requests down until each phase's pools can start together.

A phase starts one actor of each of its pools at once (``pipelines/run/cluster.py``); three dedup stages
asking for a CPU each cannot start on a two-core laptop, which a first run should not refuse. The
CPU a pool asks for is only a scheduling share, never a result, so on a local cluster every pool of
an over-asking phase is scaled by the same factor, with a warning. GPUs and custom resources are
never scaled: a GPU that is not there still fails before any work. A remote cluster is left alone,
since its autoscaler or its operator decides what fits.
"""

from __future__ import annotations

import logging
import math
import os

from pipelines.config import RayConfig, ResourcesConfig
from pipelines.run.cluster import READER, Pool, cluster_nodes

log = logging.getLogger(__name__)
MIN_CPUS = 0.05


def scaled_cpus(asks: dict[str, float], cpus: float, fixed: float) -> dict[str, float]:
    """``asks`` scaled by one factor so that they and ``fixed`` fit in ``cpus``; {} when they fit already
    or cannot fit at all (the cluster check then says why)."""
    total = sum(asks.values())
    room = cpus - fixed
    if total + fixed <= cpus or room <= MIN_CPUS * len(asks) or total <= 0:
        return {}
    factor = room / total
    return {name: max(MIN_CPUS, math.floor(ask * factor * 100) / 100) for name, ask in asks.items() if ask}


def fit_cpus(phase_pools: dict[str, list[Pool]], cpus: float) -> tuple[dict[str, float], list[str]]:
    """{pool field: scaled num_cpus} so that each phase's pools start together on ``cpus``, and one warning
    per phase it changed. The staged-image reader is fixed: it is not a config field."""
    scaled_all: dict[str, float] = {}
    warnings = []
    for phase, pools in phase_pools.items():
        asks = {pool.field: pool.resources.num_cpus for pool in pools if pool.field != READER}
        fixed = sum(pool.resources.num_cpus for pool in pools if pool.field == READER)
        scaled = scaled_cpus(asks, cpus, fixed)
        if not scaled:
            continue
        scaled_all.update(scaled)
        changes = ", ".join(f"{field}.num_cpus {asks[field]:g} -> {value:g}" for field, value in scaled.items())
        warnings.append(f"{phase}: its pools ask for {sum(asks.values()) + fixed:g} CPUs together but this local "
                        f"cluster has {cpus:g}; scaled down to fit: {changes}")
    return scaled_all, warnings


def with_cpus(resources: ResourcesConfig, cpus_by_field: dict[str, float]) -> ResourcesConfig:
    """``resources`` with ``num_cpus`` set for each field (``resources.ingest``, ``resources.stages.clip``, ...)."""
    for field, value in cpus_by_field.items():
        name = field.removeprefix("resources.")
        if name.startswith("stages."):
            stage = name.removeprefix("stages.")
            updated = resources.for_stage(stage).model_copy(update={"num_cpus": value})
            resources = resources.model_copy(update={"stages": {**resources.stages, stage: updated}})
        else:
            updated = getattr(resources, name).model_copy(update={"num_cpus": value})
            resources = resources.model_copy(update={name: updated})
    return resources


def local_cpus(ray_config: RayConfig) -> float | None:
    """CPUs of the connected cluster when it is a local single node; None for a remote or autoscaling one,
    whose operator or autoscaler decides what fits."""
    if ray_config.address or os.environ.get("RAY_ADDRESS") or ray_config.autoscaling:
        return None
    nodes = cluster_nodes()
    return nodes[0].get("CPU", 0.0) if len(nodes) == 1 else None
