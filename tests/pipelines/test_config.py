"""Config: bad configs fail before any work, naming the field; overrides parse as YAML."""

from __future__ import annotations

import pytest
import yaml

from pipelines.config import ConfigError, RunConfig, apply_override, build_config, dump_config, load_config

BASE = {"output_dir": "/tmp/run", "input": {"path": "urls.parquet"}}


def test_minimal_config_fills_documented_defaults():
    config = build_config(BASE)
    assert config.input.kind == "url_list"
    assert config.crawl.resize_mode == "border" and config.crawl.image_size == 256
    assert config.export.shard_size == 10_000
    assert config.crawl.allow_private_addresses is False


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match=r"crawl\.image_sise: unknown field"):
        build_config({**BASE, "crawl": {"image_sise": 128}})


def test_bad_value_names_field_and_allowed_values():
    with pytest.raises(ConfigError) as err:
        build_config({**BASE, "crawl": {"resize_mode": "stretch"}})
    message = str(err.value)
    assert "crawl.resize_mode" in message and "'border'" in message


def test_missing_required_section_is_named():
    with pytest.raises(ConfigError, match=r"input: Field required"):
        build_config({"output_dir": "/tmp/run"})


def test_overrides_parse_yaml_values_and_create_sections():
    config = build_config(BASE, ["crawl.image_size=384", "crawl.allow_private_addresses=true",
                                 "resources.ingest.concurrency=4"])
    assert config.crawl.image_size == 384
    assert config.crawl.allow_private_addresses is True
    assert config.resources.ingest.concurrency == 4


@pytest.mark.parametrize("override", ["no_equals_sign", "=3"])
def test_malformed_override_explains_form(override):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override({}, override)


def test_override_through_a_value_is_refused():
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_override({"output_dir": "x"}, "output_dir.sub=1")


def test_cross_field_rule():
    with pytest.raises(ConfigError, match="total_timeout_s"):
        build_config({**BASE, "crawl": {"connect_timeout_s": 30, "total_timeout_s": 5}})


def test_dumped_config_loads_back_identically(tmp_path):
    config = build_config(BASE, ["crawl.max_aspect_ratio=3.5"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    # A run directory loads its config.yaml, which works on that directory wherever it now is.
    assert load_config(tmp_path) == config.model_copy(update={"output_dir": str(tmp_path.resolve())})


def test_a_moved_run_directory_works_on_itself_from_any_working_directory(tmp_path, monkeypatch):
    from pipelines.config import absolute_paths

    (tmp_path / "orig").mkdir()
    monkeypatch.chdir(tmp_path / "orig")
    recorded = absolute_paths(build_config({"output_dir": "run", "input": {"path": "urls.txt"}}))
    assert recorded.output_dir == str(tmp_path / "orig" / "run")  # what prepare() writes to config.yaml
    assert recorded.input.path == str(tmp_path / "orig" / "urls.txt")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.yaml").write_text(dump_config(recorded))
    monkeypatch.chdir(tmp_path)
    assert load_config(copy).output_dir == str(copy)
    assert load_config("copy").output_dir == str(copy)
    assert load_config(copy, ["output_dir=elsewhere"]).output_dir == "elsewhere"
    (copy / "config.yaml").write_text(dump_config(recorded.model_copy(update={"output_dir": "s3://b/run"})))
    assert load_config(copy).output_dir == "s3://b/run"  # copy is then the URI's staging copy


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(["not", "a", "mapping"]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_stage_names_are_exactly_the_stages_a_full_config_builds():
    """resources.stages keys are checked against STAGE_NAMES, which derives from the one table of stages."""
    from pipelines.run.stages import STAGE_NAMES, caption_stages, score_stages

    everything = RunConfig.model_validate({
        "input": {"kind": "url_list", "path": "x.parquet"}, "output_dir": "/tmp/unused",
        "filters": {name: {"enabled": True} for name in ("clip", "aesthetic", "nsfw", "language", "ocr", "quality",
                                                          "watermark")},
        "dedup": {"exact": {"enabled": True}, "phash": {"enabled": True}, "minhash": {"enabled": True},
                  "sscd": {"enabled": True, "random_init": True}, "pdq": {"enabled": True}},
        "caption": {"blip2": {"enabled": True}, "llava": {"enabled": True}, "qwen_vl": {"enabled": True}}})
    built = [spec.name for spec in score_stages(everything) + caption_stages(everything)]
    assert sorted(built) == sorted(STAGE_NAMES) and len(set(built)) == len(built)


def test_overrides_change_a_copy_and_never_the_callers_sections():
    """Two configs built from dicts that share a section (bench/neardup_eval.py's methods share one ``{"enabled":
    False}``): an override of the first leaves the second, and the caller's dicts, as they were."""
    off = {"enabled": False}
    first = {"output_dir": "/tmp/never-written", "input": {"path": "urls.parquet"},
             "dedup": {"pdq": {"enabled": True, "verify": off}, "layout": off}}
    second = {**first, "dedup": {"pdq": {"enabled": True, "verify": off}}}
    assert build_config(first, ["dedup.layout.enabled=true"]).dedup.layout.enabled
    assert off == {"enabled": False} and first["dedup"]["layout"] is off
    assert not build_config(second).dedup.pdq.verify.enabled
