"""The cluster fit check and the actor pool arguments: pure functions, no Ray cluster needed."""

from __future__ import annotations

import pytest
import ray

from pipelines.config import ConfigError, StageResources
from pipelines.run.cluster import Pool, check_pools, pool_args

CPU_NODE = {"CPU": 8.0, "memory": 3e10, "node:10.0.0.1": 1.0}
GPU_NODE = {"CPU": 16.0, "GPU": 2.0, "accelerator_type:A100": 1.0}


def test_gpu_stage_on_cpu_only_cluster_names_the_field() -> None:
    pools = [Pool("resources.stages.clip", StageResources(num_gpus=1, concurrency=4))]
    with pytest.raises(ConfigError, match=r"score: resources.stages.clip asks for CPU=1, GPU=1 per actor.*num_gpus"):
        check_pools("score", pools, [CPU_NODE, CPU_NODE])


def test_actor_must_fit_on_one_node_not_on_the_sum() -> None:
    pools = [Pool("resources.stages.blip2", StageResources(num_cpus=4, num_gpus=3))]
    with pytest.raises(ConfigError, match="no node of the cluster has that"):
        check_pools("caption", pools, [GPU_NODE, GPU_NODE])  # 4 GPUs in all, 2 per node


def test_custom_resource_must_exist() -> None:
    pools = [Pool("resources.stages.nsfw", StageResources(resources={"tpu_v5": 1}))]
    with pytest.raises(ConfigError, match="tpu_v5=1"):
        check_pools("score", pools, [CPU_NODE, GPU_NODE])


def test_pools_start_together_so_their_minimums_add_up() -> None:
    pools = [Pool("resources.stages.clip", StageResources(num_gpus=1)), Pool("resources.stages.aesthetic", StageResources(num_gpus=1)),
             Pool("resources.stages.nsfw", StageResources(num_gpus=1))]
    with pytest.raises(ConfigError, match=r"start together and need at least CPU=3, GPU=3"):
        check_pools("score", pools, [GPU_NODE])


def test_concurrency_beyond_the_cluster_is_a_warning() -> None:
    pools = [Pool("resources.stages.clip", StageResources(num_gpus=1, concurrency=8)), Pool("resources.ingest", StageResources(concurrency=64))]
    warnings = check_pools("score", pools, [GPU_NODE])
    assert len(warnings) == 2
    assert "resources.stages.clip wants 8 actors" in warnings[0]
    assert "resources.ingest wants 64 actors" in warnings[1]


def test_autoscaling_turns_shortages_into_warnings() -> None:
    pools = [Pool("resources.stages.clip", StageResources(num_gpus=1))]
    warnings = check_pools("score", pools, [CPU_NODE], autoscaling=True)
    assert any("waiting for the autoscaler" in w for w in warnings)


def test_fitting_config_passes_quietly() -> None:
    pools = [Pool("resources.stages.clip", StageResources(num_gpus=1, concurrency=2)), Pool("resources.stages.aesthetic", StageResources(num_gpus=0.5))]
    assert check_pools("score", pools, [CPU_NODE, GPU_NODE]) == []


def test_pool_args_use_an_actor_pool_from_one_actor() -> None:
    args = pool_args(StageResources(num_gpus=1, concurrency=4, resources={"gpu_node": 1}))
    assert isinstance(args["compute"], ray.data.ActorPoolStrategy)
    assert (args["compute"].min_size, args["compute"].max_size) == (1, 4)
    assert args["num_gpus"] == 1 and args["resources"] == {"gpu_node": 1}
    assert "concurrency" not in args
    assert pool_args(StageResources(concurrency=8), cap=3)["compute"].max_size == 3


def test_fp8_on_gpus_older_than_hopper_fails_before_any_work() -> None:
    from pipelines.config import RunConfig
    from pipelines.run.cluster import check_fp8

    def config(**clip) -> RunConfig:
        return RunConfig.model_validate({"input": {"kind": "url_list", "path": "x.parquet"}, "output_dir": "/tmp/x",
                                         "filters": {"clip": {"enabled": True, "precision": "fp8", **clip}}})

    a100 = [{"CPU": 8.0, "GPU": 1.0, "accelerator_type:A100": 1.0}]
    with pytest.raises(ConfigError, match="filters.clip.precision: fp8 .* A100"):
        check_fp8(config(), a100)
    check_fp8(config(), a100 + [{"GPU": 8.0, "accelerator_type:H100": 1.0}])  # a Hopper node exists
    check_fp8(config(), [{"GPU": 1.0, "accelerator_type:X900": 1.0}])  # unknown: the actor checks
    check_fp8(config(device="cpu"), a100)
    check_fp8(config(precision="bf16"), a100)
