"""On a local cluster, scale stage CPU requests down until each phase's pools can start together.

A phase starts one actor of each of its pools at once (``pipelines/cluster.py``); three dedup stages
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

from pipelines.cluster import READ_NUM_CPUS, cluster_nodes
from pipelines.config import RunConfig
from pipelines.stages import caption_stages, score_stages

log = logging.getLogger(__name__)
MIN_CPUS = 0.05


def phase_cpus(config: RunConfig) -> dict[str, dict[str, float]]:
    """Phase -> {resources field: CPUs one actor asks for} for each phase that starts pools."""
    phases = {"ingest": {"ingest": config.resources.ingest.num_cpus},
              "export": {"export": config.resources.export.num_cpus}}
    for phase, specs in (("score", score_stages(config)), ("caption", caption_stages(config))):
        if specs:
            phases[phase] = {spec.name: spec.resources.num_cpus for spec in specs}
    return phases


def scaled_cpus(asks: dict[str, float], cpus: float, fixed: float) -> dict[str, float]:
    """``asks`` scaled by one factor so that they and ``fixed`` fit in ``cpus``; {} when they fit already
    or cannot fit at all (the cluster check then says why)."""
    total = sum(asks.values())
    room = cpus - fixed
    if total + fixed <= cpus or room <= MIN_CPUS * len(asks) or total <= 0:
        return {}
    factor = room / total
    return {name: max(MIN_CPUS, math.floor(ask * factor * 100) / 100) for name, ask in asks.items() if ask}


def fit_cpus(config: RunConfig, cpus: float) -> tuple[RunConfig, list[str]]:
    """The config with CPU requests scaled to fit ``cpus``, and one warning per phase it changed."""
    resources, warnings = config.resources, []
    for phase, asks in phase_cpus(config).items():
        fixed = READ_NUM_CPUS if phase in ("score", "caption") else 0.0
        scaled = scaled_cpus(asks, cpus, fixed)
        if not scaled:
            continue
        for name, value in scaled.items():
            if name in ("ingest", "export"):
                resources = resources.model_copy(update={name: getattr(resources, name).model_copy(
                    update={"num_cpus": value})})
            else:
                stage = resources.for_stage(name).model_copy(update={"num_cpus": value})
                resources = resources.model_copy(update={"stages": {**resources.stages, name: stage}})
        changes = ", ".join(f"{_field(n)}.num_cpus {asks[n]:g} -> {v:g}" for n, v in scaled.items())
        warnings.append(f"{phase}: its pools ask for {sum(asks.values()) + fixed:g} CPUs together but this local "
                        f"cluster has {cpus:g}; scaled down to fit: {changes}")
    return config.model_copy(update={"resources": resources}), warnings


def _field(name: str) -> str:
    return f"resources.{name}" if name in ("ingest", "export") else f"resources.stages.{name}"


def fit_local_cluster(config: RunConfig) -> RunConfig:
    """``fit_cpus`` against the connected cluster when it is a local one; a remote cluster's config is unchanged."""
    if config.ray.address or os.environ.get("RAY_ADDRESS") or config.ray.autoscaling:
        return config
    nodes = cluster_nodes()
    if len(nodes) != 1:
        return config
    fitted, warnings = fit_cpus(config, nodes[0].get("CPU", 0.0))
    for warning in warnings:
        log.warning(warning)
    return fitted

