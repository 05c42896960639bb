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


def test_each_detector_has_one_row_that_the_others_derive_from():
    """dedup.config.DETECTORS is the one table: its rows name a finder dedup.finders has, a config section,
    a descriptor column of the manifests schema; FINDERS and the tune sections list the same detectors."""
    from dedup.config import DETECTORS, SECTION_DETECTORS
    from dedup.finders import FINDERS
    from manifests import schema as col

    names = [d.name for d in DETECTORS]
    assert len(set(names)) == len(names) and list(FINDERS) == names
    assert sorted(n for group in SECTION_DETECTORS.values() for n in group) == sorted(names)
    columns = {v for k, v in vars(col).items() if k.isupper() and isinstance(v, str)}
    for d in DETECTORS:
        assert d.section in DedupConfig.model_fields and d.column in columns
        assert d.setting is None or d.setting in ("threshold", "eps") or d.setting.split(".")[0] in type(
            getattr(DedupConfig(), d.section)).model_fields
    assert set(DedupConfig().stored_from()) <= {d.name for d in DETECTORS if d.setting in ("threshold", "eps")}
    from pipelines.run.stages import STAGES
    assert {s.name for s in STAGES if s.name in names} == {d.name for d in DETECTORS if d.stage}


def test_a_config_recorded_with_a_retired_field_still_loads_and_a_misspelt_one_does_not(caplog):
    """A run directory's config.yaml records every field; one a later version retired (the keypoints' colour
    check) is dropped with a warning so the run still resumes, while a misspelt field stays an error."""
    recorded = {"output_dir": "/tmp/run", "input": {"path": "urls.parquet"},
                "dedup": {"pdq": {"enabled": True, "verify": {"keypoints": {"max_gain": 3.0, "max_hue_shift": 45.0,
                                                                          "max_anisotropy": 1.5,
                                                                          "min_inliers": 25}}}}}
    config = build_config(recorded)
    assert config.dedup.pdq.verify.keypoints.min_inliers == 25
    assert "max_anisotropy, max_gain, max_hue_shift no longer exist" in caplog.text
    recorded["dedup"]["pdq"]["verify"]["keypoints"]["max_gian"] = 3.0
    with pytest.raises(ConfigError, match="max_gian"):
        build_config(recorded)
