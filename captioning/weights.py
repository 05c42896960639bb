"""Where a captioner's weights are on disk, found without the network.

Weights are fetched once, before a run (``thresher models fetch``), into the Hugging Face cache;
a run only looks them up, so a missing model fails before any work starts, on the driver, with the
command that fixes it, instead of every actor downloading 15 GB at once or failing mid-run.
"""

from __future__ import annotations

from pathlib import Path

from captioning.config import CaptionConfig, CaptionerConfig

WEIGHT_GLOBS = ("*.safetensors", "*.bin")


class MissingWeightsError(FileNotFoundError):
    """A model's weights are not on this machine; the message says how to fetch them."""


def _missing(config: CaptionerConfig, why: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"weights of {config.model} at revision {config.revision} are not available offline ({why}); "
        f"fetch them first with `thresher models fetch` (or `huggingface-cli download {config.model} "
        f"--revision {config.revision}`), set HF_HOME to the cache that holds them, "
        f"or point `model` at a local directory")


def _check_snapshot(path: Path, config: CaptionerConfig) -> Path:
    if not (path / "config.json").is_file():
        raise _missing(config, f"{path} has no config.json")
    if not any(next(path.glob(g), None) for g in WEIGHT_GLOBS):
        raise _missing(config, f"{path} has no weight files")
    return path


def resolve_weights(config: CaptionerConfig) -> Path:
    """The local directory holding ``config.model`` at ``config.revision``; never downloads."""
    local = Path(config.model).expanduser()
    if local.is_dir():
        return _check_snapshot(local, config)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(config.model, revision=config.revision, local_files_only=True)
    except LocalEntryNotFoundError:
        raise _missing(config, "not in the Hugging Face cache") from None
    return _check_snapshot(Path(path), config)


def enabled_captioners(config: CaptionConfig) -> dict[str, CaptionerConfig]:
    """Enabled captioner configs by stage name, in run order."""
    candidates = {"blip2": config.blip2, "llava": config.llava, "qwen_vl": config.qwen_vl}
    return {name: c for name, c in candidates.items() if c.enabled}


def check_weights(config: CaptionConfig) -> None:
    """Raise MissingWeightsError naming every enabled captioner whose weights are missing."""
    problems = []
    for name, captioner in enabled_captioners(config).items():
        try:
            resolve_weights(captioner)
        except MissingWeightsError as exc:
            problems.append(f"caption.{name}: {exc}")
    if problems:
        raise MissingWeightsError("\n".join(problems))


def weights_location(config: CaptionerConfig) -> tuple[bool, str]:
    """(present, where): the local snapshot when found, else why not."""
    try:
        return True, str(resolve_weights(config))
    except MissingWeightsError:
        return False, f"Hugging Face cache: {config.model}@{config.revision}"


def fetch_weights(config: CaptionerConfig) -> str:
    """Download ``config.model`` at its pinned revision into the Hugging Face cache. Needs internet."""
    present, where = weights_location(config)
    if present:
        return f"present: {where}"
    from huggingface_hub import snapshot_download

    path = snapshot_download(config.model, revision=config.revision,
                             allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
    return f"fetched: {path}"
