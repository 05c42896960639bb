"""Offline weight resolution: local directories, the Hugging Face cache layout, and the missing-weights error."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from captioning.config import Blip2CaptionerConfig, CaptionConfig, LlavaCaptionerConfig
from captioning.weights import MissingWeightsError, check_weights, resolve_weights
from pipelines.config import ConfigError, build_config
from pipelines.run.driver import validate

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def _cached_snapshot(cache: Path, repo: str, revision: str, files: tuple[str, ...]) -> Path:
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_text("{}")
    return snapshot


def test_a_local_model_directory_resolves_to_itself(tiny_blip2: Path) -> None:
    assert resolve_weights(Blip2CaptionerConfig(model=str(tiny_blip2))) == tiny_blip2


def test_a_pinned_revision_resolves_from_the_hub_cache_without_network(empty_hub_cache: Path) -> None:
    snapshot = _cached_snapshot(empty_hub_cache, "org/vlm", REVISION, ("config.json", "model.safetensors"))
    assert resolve_weights(Blip2CaptionerConfig(model="org/vlm", revision=REVISION)) == snapshot


def test_missing_weights_name_the_model_revision_and_the_fetch_command(empty_hub_cache: Path) -> None:
    config = LlavaCaptionerConfig()
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(config)
    message = str(err.value)
    assert config.model in message and config.revision in message and "thresher models fetch" in message


def test_a_snapshot_without_weight_files_is_missing(empty_hub_cache: Path) -> None:
    _cached_snapshot(empty_hub_cache, "org/vlm", REVISION, ("config.json",))
    with pytest.raises(MissingWeightsError, match="no weight files"):
        resolve_weights(Blip2CaptionerConfig(model="org/vlm", revision=REVISION))


def test_only_enabled_captioners_are_checked(empty_hub_cache: Path) -> None:
    check_weights(CaptionConfig())  # nothing enabled: nothing to resolve
    with pytest.raises(MissingWeightsError, match="caption.llava"):
        check_weights(CaptionConfig(llava=LlavaCaptionerConfig(enabled=True)))


def test_run_validation_fails_before_work_when_weights_are_missing(empty_hub_cache: Path, tmp_path: Path) -> None:
    config = build_config({"output_dir": str(tmp_path / "run"), "input": {"path": str(tmp_path)}},
                          ["caption.blip2.enabled=true"])
    with pytest.raises(ConfigError, match="Salesforce/blip2-opt-2.7b.*thresher models fetch"):
        validate(config)
    assert not (tmp_path / "run").exists()
