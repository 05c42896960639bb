"""The score phase's shared decode stage on Ray Data: CPU tasks streaming ahead of the model actors.

The plan comes from what the enabled stages declare (``needs(config)`` on each stage class); each task
runs ``manifests.decode.decode_batch``. With the default resources the tasks take the reader's CPU share,
so Ray Data fuses them with the tar reading into one task (read, decode, prepare); ``resources.stages.decode``
sizes them apart (``num_cpus`` per task, ``batch_size``, and ``concurrency`` when set: tasks in flight).
"""

from __future__ import annotations

import ray

from manifests import schema as col
from manifests.decode import DecodePlan, check_needs, decode_batch, plan_decode
from pipelines.config import READ_NUM_CPUS, ConfigError, RunConfig, StageResources

DECODE = "decode"  # its resources.stages key


def stage_needs(spec) -> tuple:
    """What one StageSpec's class declares it needs prepared for ``spec.config`` (nothing if it declares none)."""
    declare = getattr(spec.cls, "needs", None)
    return tuple(declare(spec.config)) if declare is not None else ()


def plan(config: RunConfig, specs: list) -> DecodePlan | None:
    """The shared decode of ``specs``: raises ConfigError, at build time, on a need no decode can make."""
    problems = [p for spec in specs for p in check_needs(spec.name, stage_needs(spec))]
    if problems:
        raise ConfigError("the decode stage cannot be planned:\n  " + "\n  ".join(problems))
    reads_image = any(col.IMAGE in spec.reads for spec in specs)
    return plan_decode([stage_needs(s) for s in specs], reads_image, config.decode.device, config.decode.resize)


def decode_resources(config: RunConfig) -> StageResources:
    """``resources.stages.decode``, else the reader's CPU share (so the decode fuses with reading)."""
    return config.resources.stages.get(DECODE, StageResources(num_cpus=READ_NUM_CPUS))


def add_decode(ds: ray.data.Dataset, config: RunConfig, specs: list) -> ray.data.Dataset:
    """``ds`` followed by the decode tasks, when a stage needs anything prepared."""
    decode_plan = plan(config, specs)
    if decode_plan is None:
        return ds
    res = decode_resources(config)
    args = {}
    if "concurrency" in res.model_fields_set:
        args["compute"] = ray.data.TaskPoolStrategy(size=res.concurrency)
    return ds.map_batches(decode_batch, fn_args=(decode_plan,), batch_size=res.batch_size, batch_format="numpy",
                          num_cpus=res.num_cpus, **args)
