"""The shared decode planned from the stages' declared needs, its build-time check and its place in the
cluster check: pure functions, no Ray cluster needed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from filters.images import ClipPixels, ClipTokens, OpenNsfwPixels
from manifests.images import ResizedArray, RgbArray, ShortSideArray
from pipelines.config import ConfigError, RunConfig
from pipelines.run.cluster import READER, check_pools, decode_pool, stage_pools
from pipelines.run.decode import plan
from pipelines.run.stages import caption_stages, check_resources, check_stages, score_stages

EVERYTHING = {
    "input": {"kind": "url_list", "path": "x.parquet"}, "output_dir": "/tmp/unused",
    "filters": {"clip": {"enabled": True, "model": "ViT-L-14"}, "aesthetic": {"enabled": True},
                "nsfw": {"enabled": True}},
    "dedup": {"exact": {"enabled": True}, "phash": {"enabled": True}, "minhash": {"enabled": True},
              "sscd": {"enabled": True, "random_init": True}},
    "caption": {"blip2": {"enabled": True}}}


def config(**extra) -> RunConfig:
    return RunConfig.model_validate(EVERYTHING | extra)


def test_one_plan_makes_every_distinct_need_and_drops_the_bytes() -> None:
    decode = plan(config(), score_stages(config()))
    assert [type(n) for n in decode.needs] == [ClipPixels, ClipTokens, OpenNsfwPixels, ResizedArray, RgbArray,
                                               ShortSideArray]
    assert decode.needs[0] == ClipPixels((224, 224), "bicubic", "shortest", 0)
    assert not decode.keep_image and decode.on_device == ()
    assert plan(config(), caption_stages(config())) is None  # the captioners read the encoded bytes themselves


def test_gpu_decode_leaves_only_the_clip_crop_to_the_device() -> None:
    gpu = config(decode={"device": "gpu"})
    assert [type(n) for n in plan(gpu, score_stages(gpu)).on_device] == [ClipPixels]
    assert plan(gpu, score_stages(gpu)).device_decodes


def test_gpu_resize_decodes_on_the_cpu_and_leaves_the_clip_crop_to_the_device() -> None:
    resize = config(decode={"resize": "gpu"})
    decode = plan(resize, score_stages(resize))
    assert [type(n) for n in decode.on_device] == [ClipPixels] and not decode.device_decodes
    with pytest.raises(Exception, match="resize"):
        config(decode={"resize": "tpu"})


def test_a_need_no_decode_can_make_fails_at_build_time() -> None:
    class Broken:
        reads, writes = (), ()

        @staticmethod
        def needs(_config) -> tuple:
            return ("pixels please",)

    specs = score_stages(config())
    with pytest.raises(ConfigError, match="stage 'broken' declares 'pixels please'"):
        check_stages(config(), specs + [replace(specs[0], name="broken", cls=Broken)])


def test_decode_resources_are_a_stage_entry() -> None:
    check_resources(config(resources={"stages": {"decode": {"num_cpus": 2, "batch_size": 128}}}))
    with pytest.raises(ConfigError, match="decode"):
        check_resources(config(resources={"stages": {"decodes": {}}}))


def score_pools(config: RunConfig) -> list:
    """The score phase's pools, as the phase table lists them."""
    specs = score_stages(config)
    return stage_pools(specs) + decode_pool(config, specs)


def test_the_cluster_check_counts_the_decode_tasks() -> None:
    fused = config()
    assert "resources.stages.decode" not in [p.field for p in score_pools(fused)]  # it is the reader
    apart = config(resources={"stages": {"decode": {"num_cpus": 6}}})
    pools = score_pools(apart)
    assert [p.field for p in pools][-2:] == [READER, "resources.stages.decode"]
    with pytest.raises(ConfigError, match="resources.stages.decode asks for CPU=6"):
        check_pools("score", pools, [{"CPU": 4.0, "GPU": 1.0}])


def test_fractional_gpus_share_one_gpu_beside_the_decode() -> None:
    shared = RunConfig.model_validate({
        "input": EVERYTHING["input"], "output_dir": "/tmp/unused", "filters": {"clip": {"enabled": True}},
        "dedup": {"exact": {"enabled": False}},  # CLIP alone (exact dedup is on by default)
        "resources": {"stages": {"clip": {"num_gpus": 0.5, "num_cpus": 1, "concurrency": 2},
                                 "decode": {"num_cpus": 2, "concurrency": 8}}}})
    pools = score_pools(shared)
    assert [p.field for p in pools] == ["resources.stages.clip", READER, "resources.stages.decode"]
    assert check_pools("score", pools, [{"CPU": 16.0, "GPU": 1.0}]) == []

