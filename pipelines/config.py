"""The run config: one pydantic model per stage, composed, loaded from YAML with ``--set`` overrides.

A mistake fails here, before any work starts, with the dotted field name and what is allowed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from captioning.config import CaptionConfig
from crawl.config import CrawlConfig, InputConfig
from dedup.config import DedupConfig
from filters.config import FiltersConfig
from manifests.card import CardConfig
from manifests.config import StrictModel
from manifests.export import ExportConfig


class StageResources(StrictModel):
    """How one stage runs on the cluster. Changing these never changes a result."""

    num_cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves per actor or task (scaled down to fit a "
                                                   "smaller local cluster)")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor; a fraction (e.g. 0.5) shares one GPU")
    concurrency: int = Field(1, ge=1, description="actors (model stages) or parallel tasks (ingest, export)")
    batch_size: int = Field(64, ge=1, description="rows per batch handed to a model stage or decode task "
                                                  "(ingest and export work per unit and per shard)")
    resources: dict[str, float] = Field(
        default_factory=dict, description="custom Ray resources per actor, e.g. {accelerator_a100: 1} to pin a node type"
    )


# CPUs of each task that reads staged images for the model stages: they run beside the actor pools,
# so they count in pipelines.run.cluster's check (a full CPU each left small clusters deadlocked: pools up, no reader).
READ_NUM_CPUS = 0.5


class ResourcesConfig(StrictModel):
    ingest: StageResources = Field(StageResources(concurrency=2), description="the download workers")
    export: StageResources = Field(StageResources(concurrency=2), description="the shard writers")
    stages: dict[str, StageResources] = Field(
        default_factory=dict, description="per model stage, by stage name (clip, aesthetic, nsfw, ...)"
    )

    def for_stage(self, name: str) -> StageResources:
        return self.stages.get(name, StageResources())


class RayConfig(StrictModel):
    address: str | None = Field(None, description="join this cluster (or set RAY_ADDRESS); None starts a local one")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local cluster (default: all)")
    autoscaling: bool = Field(
        False, description="the cluster adds nodes on demand (KubeRay autoscaler): a resource shortage at start "
                           "is a warning, not an error"
    )
    lost_node_wait_s: float = Field(
        60.0, ge=0, description="a node lost mid-phase whose resources no live node has (a GPU, a custom resource): "
                                "the phase ends after this long without one, in one line; a rerun resumes. Not "
                                "with autoscaling, which adds the node"
    )


class DecodeConfig(StrictModel):
    """The score phase's shared decode: each staged image decoded once, on CPU tasks streaming ahead of the model
    actors (``resources.stages.decode`` sizes them). ``gpu``: CLIP's JPEGs are decoded (nvJPEG) and resized on
    the model's GPU instead, for nodes with few CPU cores per GPU; other formats and other needs stay on the CPU.
    ``resize: gpu`` keeps the decode on the CPU and moves only CLIP's resize and crop to the GPU."""

    device: Literal["cpu", "gpu"] = Field(
        "cpu", description="cpu: every image decoded on CPU tasks; gpu: CLIP's JPEGs decoded (nvJPEG) and resized "
                           "on its GPU")
    resize: Literal["cpu", "gpu"] = Field(
        "cpu", description="with device cpu, where CLIP's resize and crop run; gpu: the CPU tasks only decode, "
                           "the model's device resizes (about 2.5x less CPU per image on the CLIP path; equal to "
                           "open_clip's PIL resize within rounding, not bit for bit). device gpu resizes there "
                           "anyway")


class RunConfig(StrictModel):
    output_dir: str = Field(description="run directory: a local path or a URI (s3://, gs://) synced after each phase")
    staging_dir: str | None = Field(
        None, description="local working copy of a URI output_dir (default: a folder under the system temp dir)"
    )
    input: InputConfig = Field(description="what to ingest; input.path at least must be set")
    crawl: CrawlConfig = Field(CrawlConfig(), description="downloading, compliance checks, decoding and resizing")
    filters: FiltersConfig = Field(FiltersConfig(), description="scoring models and the decision's thresholds")
    dedup: DedupConfig = Field(DedupConfig(), description="duplicate detectors and which sample of a cluster is kept")
    caption: CaptionConfig = Field(CaptionConfig(), description="new captions from vision-language models")
    export: ExportConfig = Field(ExportConfig(), description="the WebDataset training shards")
    resources: ResourcesConfig = Field(
        ResourcesConfig(), description="CPUs, GPUs, actors and batch size per stage; never changes a result")
    ray: RayConfig = Field(RayConfig(), description="which Ray cluster runs the pipeline")
    decode: DecodeConfig = Field(DecodeConfig(), description="where images are decoded for the score stages")
    card: CardConfig = Field(CardConfig(), description="thresher card: which input columns hold licences")

    @model_validator(mode="after")
    def _semantic_needs_clip(self):
        if self.dedup.semantic.enabled and not self.filters.clip.enabled:
            raise ValueError("dedup.semantic reads the clip_embedding the CLIP stage writes: set "
                             "filters.clip.enabled=true (or disable dedup.semantic)")
        return self


class ConfigError(ValueError):
    """A config that cannot run; the message names each bad field and what it accepts."""


def apply_override(data: dict[str, Any], override: str) -> None:
    """``a.b.c=value`` sets data["a"]["b"]["c"]; the value is parsed as YAML (numbers, bools, lists)."""
    path, sep, raw = override.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. --set filters.rules.min_image_side=256")
    keys = path.strip().split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {override!r}: {key!r} is a value, not a section")
        node = child
    try:
        node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {override!r}: the value is not valid YAML ({_problem(exc)}); quote it, "
                          f"e.g. --set '{path.strip()}=\"...\"'") from None


def _describe(error: ValidationError) -> str:
    lines = []
    for e in error.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        message = e["msg"]
        if e["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against the documented config"
        lines.append(f"  {field}: {message}")
    return "invalid config:\n" + "\n".join(lines)


def build_config(data: dict[str, Any], overrides: list[str] = ()) -> RunConfig:
    """The validated config of ``data`` with ``overrides`` (``a.b.c=value``) applied to a copy of it: the
    caller's dict, and every section it shares with other dicts, stays as it was."""
    data = copy.deepcopy(data)
    for override in overrides:
        apply_override(data, override)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Load a YAML config, or the resolved config of an existing run directory: a run directory's config
    works on that directory, wherever it was moved or copied (its ``output_dir`` is replaced by it)."""
    return build_config(config_data(path), overrides)


def config_data(path: str | Path) -> dict[str, Any]:
    """``load_config``'s document before the overrides: a YAML config, or a run directory's config at that
    directory (an override of ``output_dir`` still wins)."""
    path = Path(path)
    run_dir = path if path.is_dir() else None
    if run_dir is not None:
        path = path / "config.yaml"
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return at_run_dir(data, run_dir) if run_dir is not None else data


def read_yaml(path: Path) -> Any:
    """The YAML document at ``path``; a syntax error is one line naming the file, line and column, and the fix."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        if "'\\t'" in str(getattr(exc, "problem", "")):
            raise ConfigError(f"{where}: a tab character; YAML indents with spaces only: replace the tabs with "
                              f"spaces") from None
        raise ConfigError(f"{where}: YAML syntax error ({_problem(exc)}); fix that line, or start from the "
                          f"output of `thresher config`") from None


def _problem(exc: yaml.YAMLError) -> str:
    return " ".join(str(getattr(exc, "problem", None) or exc).split())


def at_run_dir(data: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``data`` with ``output_dir`` set to ``run_dir``, unless it names a URI (``run_dir`` is then its staging copy)."""
    recorded = str(data.get("output_dir") or "")
    if "://" in recorded and not recorded.startswith("file://"):
        return data
    return {**data, "output_dir": str(run_dir.resolve())}


def absolute_paths(config: RunConfig) -> RunConfig:
    """``output_dir`` and a local ``input.path`` as absolute paths, so the config.yaml a run records works from
    any working directory."""
    def absolute(path: str) -> str:
        return path if "://" in path else str(Path(path).resolve())

    return config.model_copy(update={"output_dir": absolute(config.output_dir), "input": config.input.model_copy(
        update={"path": absolute(config.input.path)})})


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
