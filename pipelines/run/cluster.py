"""Actor pools and the check that a phase's pools fit the cluster before any of them starts.

Every pool of a phase starts at once with one actor (``ActorPoolStrategy(min_size=1)``) and grows to
its ``concurrency`` as the cluster allows, so a small cluster runs every stage slowly instead of
deadlocking on a pool waiting for resources another pool holds. A stage that asks for a GPU on a
cluster without one, or for more of a resource than any node has, would wait forever on an
unschedulable actor; ``check_cluster`` turns that into an error naming the stage and the field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipelines.config import READ_NUM_CPUS, ConfigError, RunConfig, StageResources

log = logging.getLogger(__name__)

READER = "the staged-image reader (and the decode stage fused with it)"

# Restarts are left to Ray Data's actor pools, which restart a dead actor (node lost, OOM kill) and
# retry its in-flight batch without limit (max_restarts=-1, max_task_retries=-1), while an exception
# raised by a stage fails the run at once. Ray 2.60 deprecates passing max_restarts to map_batches
# (removed in 2.64), so bounding them is not possible without an API that is going away.


@dataclass(frozen=True)
class Pool:
    """One actor pool of a phase: the config field its settings come from (named in messages), and those settings."""

    field: str  # e.g. "resources.stages.clip"
    resources: StageResources

    def demand(self) -> dict[str, float]:
        """Resources one actor holds, in Ray's names."""
        res = self.resources
        wanted = {"CPU": res.num_cpus, "GPU": res.num_gpus, **res.resources}
        return {k: float(v) for k, v in wanted.items() if v}


def stage_pools(specs) -> list[Pool]:
    """The pools of a phase's model stages (StageSpec list), plus the staged-image reader that feeds them."""
    pools = [Pool(f"resources.stages.{spec.name}", spec.resources) for spec in specs]
    return pools + [Pool(READER, StageResources(num_cpus=READ_NUM_CPUS))] if pools else []


def dedup_pools(config: RunConfig) -> list[Pool]:
    """The dedup phase's GPU list-join tasks, when asked for: a GPU request no node can meet would wait forever."""
    dedup = config.dedup
    gpus = dedup.partitions.join_gpus
    if not (gpus and dedup.partitions.enabled and "sscd" in dedup.enabled_detectors()):
        return []
    return [Pool("dedup.partitions.join_gpus", StageResources(num_cpus=1, num_gpus=gpus))]


def pool_args(res: StageResources, cap: int | None = None) -> dict:
    """Keyword arguments of ``Dataset.map`` / ``map_batches`` for an actor pool of ``res``."""
    import ray.data

    size = res.concurrency if cap is None else max(1, min(res.concurrency, cap))
    args = {"compute": ray.data.ActorPoolStrategy(min_size=1, max_size=size), "num_cpus": res.num_cpus}
    if res.num_gpus:
        args["num_gpus"] = res.num_gpus
    if res.resources:
        args["resources"] = dict(res.resources)
    return args


def _fmt(resources: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items())) or "nothing"


def check_pools(phase: str, pools: list[Pool], nodes: list[dict[str, float]], autoscaling: bool = False) -> list[str]:
    """Raise ConfigError when a phase cannot start on ``nodes`` (each node's total resources); return warnings.

    Errors: an actor that fits on no node, or one actor of every pool together exceeding the cluster.
    Warnings: a pool whose full ``concurrency`` cannot fit (it runs with fewer actors).
    With ``autoscaling`` the errors become warnings too: the autoscaler may add the nodes.
    """
    problems, warnings = [], []
    total: dict[str, float] = {}
    for node in nodes:
        for key, value in node.items():
            total[key] = total.get(key, 0.0) + value
    for pool in pools:
        demand = pool.demand()
        if not any(all(node.get(k, 0.0) >= v for k, v in demand.items()) for node in nodes):
            problems.append(f"{phase}: {pool.field} asks for {_fmt(demand)} per actor, but no node of the "
                            f"cluster has that (cluster total: {_fmt(_ray_names(total))}); lower "
                            f"{pool.field}.num_gpus/num_cpus/resources or add such a node")
        full = {k: v * pool.resources.concurrency for k, v in demand.items()}
        if any(total.get(k, 0.0) < v for k, v in full.items()):
            warnings.append(f"{phase}: {pool.field} wants {pool.resources.concurrency} actors "
                            f"({_fmt(full)}); the cluster has {_fmt(_ray_names(total))}, so it runs with fewer")
    together: dict[str, float] = {}
    for pool in pools:
        for key, value in pool.demand().items():
            together[key] = together.get(key, 0.0) + value
    short = {k: v for k, v in together.items() if total.get(k, 0.0) < v}
    if short and not problems:
        problems.append(f"{phase}: its pools start together and need at least {_fmt(together)}, but the cluster "
                        f"has {_fmt(_ray_names(total))}; lower resources.*.num_cpus/num_gpus or add nodes")
    if autoscaling:
        return warnings + [p + " (waiting for the autoscaler)" for p in problems]
    if problems:
        raise ConfigError("the cluster cannot run this config:\n  " + "\n  ".join(problems))
    return warnings


def _ray_names(resources: dict[str, float]) -> dict[str, float]:
    """Drop Ray's bookkeeping resources (node:<ip>, memory, object_store_memory) from messages."""
    return {k: v for k, v in resources.items() if not k.startswith("node:") and "memory" not in k}


def cluster_nodes() -> list[dict[str, float]]:
    """Total resources of each live node of the connected cluster."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def decode_pool(config: RunConfig, specs) -> list[Pool]:
    """The shared decode's tasks, when a stage needs them and they do not fuse into the reader's (other CPUs)."""
    from pipelines.run.decode import DECODE, decode_resources, plan

    res = decode_resources(config)
    if plan(config, specs) is None or res.num_cpus == READ_NUM_CPUS:
        return []  # none, or fused with the read tasks: the reader's pool already counts them
    return [Pool(f"resources.stages.{DECODE}", res)]


# GPUs Ray names (its ``accelerator_type:`` resources) that have no row-scaled e4m3 matmuls: fp8 fails there.
PRE_HOPPER = {"V100", "P100", "P4", "T4", "K80", "M60", "A10", "A10G", "A16", "A40", "A100", "A100-40G",
              "A100-80G", "L4", "L40S", "RTX", "Turing", "Ampere"}


def check_fp8(config: RunConfig, nodes: list[dict[str, float]]) -> None:
    """``filters.clip.precision: fp8`` on a cluster whose GPUs Ray names are all older than Hopper fails here,
    before any work, rather than when the first CLIP actor loads (unknown names pass: the actor checks)."""
    clip = config.filters.clip
    if not (clip.enabled and clip.precision == "fp8" and clip.device != "cpu"):
        return
    kinds = {key.split(":", 1)[1] for node in nodes for key in node if key.startswith("accelerator_type:")}
    if kinds and kinds <= PRE_HOPPER:
        raise ConfigError(f"filters.clip.precision: fp8 needs GPUs of compute capability 9.0 or newer (H100, H200, "
                          f"B200); this cluster has {', '.join(sorted(kinds))}: set filters.clip.precision: bf16")


def check_cluster(phase_pools: dict[str, list[Pool]], config: RunConfig) -> None:
    """Check the pools of every phase in ``phase_pools`` (phase name -> its pools) against the connected cluster."""
    nodes = cluster_nodes()
    if "score" in phase_pools:
        check_fp8(config, nodes)
    for phase, pools in phase_pools.items():
        if not pools:
            continue
        for warning in check_pools(phase, pools, nodes, config.ray.autoscaling):
            log.warning(warning)  # the console shows it (pipelines/run/console.py)
