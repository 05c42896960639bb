"""Weights resolution, the before-any-work check, ``thresher models``, and the filter config sections."""

from __future__ import annotations

import pytest

from filters import weights as models
from filters.config import AestheticConfig, ClipScorerConfig, FiltersConfig, NsfwConfig
from filters.config import threshold_rules
from manifests import schema as col
from manifests.schema import Reason
from pipelines.cli.main import main
from pipelines.config import ConfigError, build_config
from pipelines.run.driver import validate
from pipelines.run.stages import score_stages


def run_config(tmp_path, filters: dict) -> dict:
    return {"output_dir": str(tmp_path / "run"), "input": {"kind": "url_list", "path": str(tmp_path / "u.parquet")},
            "filters": filters}


def fake_hf_cache(root, repo: str, filename: str) -> None:
    """The Hugging Face hub cache layout: refs/main names a snapshot that holds the file."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / filename).write_bytes(b"weights")


def test_missing_weights_fail_before_work_naming_file_and_fetch_command(tmp_path):
    config = build_config(run_config(tmp_path, {"cache_dir": str(tmp_path / "empty"),
                                                "clip": {"enabled": True, "model": "ViT-L-14"},
                                                "aesthetic": {"enabled": True}}))
    with pytest.raises(ConfigError) as err:
        validate(config)
    message = str(err.value)
    assert "filters.clip: weights of open_clip ViT-L-14 / openai are missing" in message
    assert "sac+logos+ava1-l14-linearMSE.pth" in message
    assert "thresher models fetch" in message
    assert not (tmp_path / "run").exists()


def test_head_on_the_wrong_clip_is_a_config_error(tmp_path, tiny_clip, checkpoints):
    config = build_config(run_config(tmp_path, {"cache_dir": str(checkpoints), "clip": tiny_clip.model_dump(),
                                                "nsfw": {"enabled": True, "backend": "clip_l14"}}))
    with pytest.raises(ConfigError, match="filters.nsfw.backend=clip_l14 takes 768-d"):
        validate(config)


def test_heads_on_a_768_clip_with_weights_present_validate(tmp_path, tiny_clip_768, checkpoints):
    config = build_config(run_config(tmp_path, {"cache_dir": str(checkpoints), "clip": tiny_clip_768.model_dump(),
                                                "aesthetic": {"enabled": True},
                                                "nsfw": {"enabled": True, "backend": "clip_l14"}}))
    validate(config)
    assert [s.name for s in score_stages(config)] == ["clip", "aesthetic", "nsfw", "pixel_hash"]  # exact dedup: default
    assert score_stages(config)[2].describe()["config"]["backend"] == "clip_l14"


def test_clip_weights_resolve_from_the_hugging_face_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = ClipScorerConfig(enabled=True, model="ViT-B-32", pretrained="laion2b_s34b_b79k",
                              cache_dir=str(tmp_path))
    assert not models.clip_weights(config).present
    fake_hf_cache(tmp_path, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors")
    weights = models.clip_weights(config)
    assert weights.present and weights.location.endswith("open_clip_model.safetensors")


def test_unknown_tag_and_checkpoint_file(tmp_path):
    unknown = models.clip_weights(ClipScorerConfig(model="ViT-B-32", pretrained="nope"))
    assert not unknown.present and "known for ViT-B-32" in unknown.location
    ckpt = tmp_path / "mine.pt"
    assert not models.clip_weights(ClipScorerConfig(pretrained=str(ckpt))).present
    ckpt.write_bytes(b"x")
    assert models.clip_weights(ClipScorerConfig(pretrained=str(ckpt))).present


def test_fetch_refuses_in_offline_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = models.head_entry("filters.aesthetic", "v2", AestheticConfig(cache_dir=str(tmp_path)))
    with pytest.raises(models.FilterSetupError, match="offline"):
        models.fetch(missing)


def test_cache_dir_env_and_section_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "env"))
    assert models.head_weights(NsfwConfig(backend="clip_b32")).is_relative_to(tmp_path / "env")
    filters = FiltersConfig.model_validate({"cache_dir": str(tmp_path / "shared"),
                                            "nsfw": {"cache_dir": str(tmp_path / "own")}})
    assert filters.clip.cache_dir == filters.aesthetic.cache_dir == str(tmp_path / "shared")
    assert filters.nsfw.cache_dir == str(tmp_path / "own")


def test_models_list_cli(tmp_path, capsys, monkeypatch, checkpoints):
    monkeypatch.setenv(models.CACHE_ENV, str(checkpoints))
    assert main(["models", "list"]) == 1  # the CLIP backbones are not on this machine
    out = capsys.readouterr().out
    assert "LAION head v2" in out and "open_nsfw" in out and "MISSING" in out
    config = tmp_path / "c.yaml"
    config.write_text(f"output_dir: {tmp_path / 'run'}\ninput: {{kind: url_list, path: u.parquet}}\n")
    assert main(["models", "list", str(config), "--set", "filters.nsfw.enabled=true"]) == 0
    assert "present" in capsys.readouterr().out


def test_threshold_fields_and_rules():
    config = build_config({"output_dir": "x", "input": {"kind": "url_list", "path": "u"}},
                          ["filters.clip.enabled=true", "filters.clip.min_score=0.3",
                           "filters.nsfw.enabled=true", "filters.aesthetic.enabled=true",
                           "filters.aesthetic.min_score=5"]).filters
    rules = {r.column: r for r in threshold_rules(config)}
    assert (rules[col.CLIP_SCORE].minimum, rules[col.CLIP_SCORE].reason) == (0.3, Reason.CLIP_LOW)
    assert (rules[col.NSFW_PROB].maximum, rules[col.NSFW_PROB].reason) == (0.5, Reason.NSFW)
    assert rules[col.AESTHETIC_SCORE].minimum == 5
    assert ClipScorerConfig().min_score == 0.28 and threshold_rules(FiltersConfig()) == []


def test_demo_runs_open_nsfw_and_reports_the_rest_as_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    from pipelines.cli.demo import demo_filters

    section, skipped = demo_filters()
    if "clip" in section:
        pytest.skip("this machine has CLIP weights in its caches")
    assert section == {"nsfw": {"enabled": True, "backend": "open_nsfw"}}
    assert any(s.startswith("clip: ") and "thresher models fetch" in s for s in skipped)
    assert any(s.startswith("aesthetic: ") for s in skipped)
    FiltersConfig.model_validate(section)
