"""Dedup config: mistakes fail before work starts; stages are registered only when enabled."""

from __future__ import annotations

import pytest

from dedup.config import DedupConfig
from support.dedup_reference import run_dedup
from manifests.layout import RunLayout
from pipelines.config import ConfigError, build_config
from pipelines.run.stages import check_stages, score_stages


def test_store_threshold_above_threshold_is_rejected():
    with pytest.raises(ValueError, match="store_threshold"):
        DedupConfig.model_validate({"minhash": {"threshold": 0.8, "store_threshold": 0.9}})


def test_bad_field_names_the_dotted_path():
    with pytest.raises(ConfigError, match="dedup.phash.bits"):
        build_config({"output_dir": "/tmp/x", "input": {"path": "u.parquet"}, "dedup": {"phash": {"bits": 100}}})


def test_score_stages_follow_enabled_detectors():
    config = build_config({"output_dir": "/tmp/x", "input": {"path": "u.parquet"},
                           "dedup": {"exact": {"enabled": True}, "minhash": {"enabled": True},
                                     "sscd": {"enabled": True, "random_init": True}}})
    specs = score_stages(config)
    assert [s.name for s in specs] == ["pixel_hash", "minhash", "sscd"]
    check_stages(config, specs)
    assert config.dedup.enabled_detectors() == ["sha256", "pixel_hash", "minhash", "sscd"]


def test_nothing_enabled_writes_nothing(tmp_path):
    layout = RunLayout.at(tmp_path)
    assert run_dedup(DedupConfig(exact={"enabled": False}), layout) == {"detectors": []}
    assert not layout.pairs.exists() and not layout.duplicates.exists()
