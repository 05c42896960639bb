"""Which model stages a config enables, in the order they run, and the column check done once at build time."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Literal

from captioning.blip2 import Blip2Captioner
from captioning.llava import LlavaCaptioner
from captioning.qwen_vl import QwenVlCaptioner
from dedup.config import DETECTORS, Detector
from filters.aesthetic import AestheticScorer
from filters.clip import ClipScorer
from filters.language import CaptionLanguageIdentifier
from filters.nsfw import nsfw_stage
from filters.ocr import OcrScorer
from filters.quality import QualityScorer
from filters.watermark import WatermarkScorer
from manifests import schema as col
from manifests.config import stage_inputs
from pipelines.config import ConfigError, RunConfig, StageResources

# Columns every score batch starts with (see phases.staged_dataset).
# content_box: "left,top,width,height" bytes or None; the duplicate descriptors are made from that region.
BATCH_COLUMNS = (col.SAMPLE_ID, col.IMAGE, col.CAPTION, col.CONTENT_BOX)


@dataclass(frozen=True)
class StageSpec:
    """A callable class run as a Ray actor pool: ``cls(config)`` once per actor, then ``__call__(batch)``."""

    name: str  # key of its resources section and of its entry in run.json
    cls: type
    config: Any
    resources: StageResources

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(self.cls.reads)

    @property
    def writes(self) -> tuple[str, ...]:
        return tuple(self.cls.writes)

    def describe(self) -> dict:
        """What the stage's output depends on, as run.json records it and score files are stamped with: its
        class and the part of its config that changes what it writes (model ids and revisions included;
        thresholds and dedup-phase settings left out: ``manifests.config.stage_inputs``)."""
        return {"class": f"{self.cls.__module__}.{self.cls.__qualname__}", "config": stage_inputs(self.config)}

    def describe_whole(self) -> dict:
        """``describe()`` as it was before thresholds were left out (score files stamped by older runs)."""
        return {"class": f"{self.cls.__module__}.{self.cls.__qualname__}", "config": self.config.model_dump(mode="json")}


@dataclass(frozen=True)
class Stage:
    """One model stage Thresher knows: its name (resources.stages key, run.json entry), the phase it runs in,
    its config section, whether a config enables it, and its class (which may depend on the section)."""

    name: str
    phase: Literal["score", "caption"]
    section: Callable[[RunConfig], Any]
    enabled: Callable[[RunConfig], bool]
    cls: Callable[[Any], type]


def _descriptor_stage(detector: Detector) -> Stage:
    """The score stage that writes ``detector``'s descriptor: its class, section and switch from its row."""
    module, _, name = detector.stage.partition(":")
    cls = getattr(importlib.import_module(module), name)
    return Stage(detector.name, "score", lambda c: getattr(c.dedup, detector.section),
                 lambda c: detector.enabled(c.dedup), lambda s: cls)


# Every stage, in run order within its phase. CLIP comes first: the aesthetic and CLIP-NSFW heads read
# its clip_embedding. The dedup stages write the descriptors their detectors (dedup.config.DETECTORS) read.
STAGES = (
    Stage("clip", "score", lambda c: c.filters.clip, lambda c: c.filters.clip.enabled, lambda s: ClipScorer),
    Stage("aesthetic", "score", lambda c: c.filters.aesthetic, lambda c: c.filters.aesthetic.enabled,
          lambda s: AestheticScorer),
    Stage("nsfw", "score", lambda c: c.filters.nsfw, lambda c: c.filters.nsfw.enabled, nsfw_stage),
    Stage("language", "score", lambda c: c.filters.language, lambda c: c.filters.language.enabled,
          lambda s: CaptionLanguageIdentifier),
    Stage("ocr", "score", lambda c: c.filters.ocr, lambda c: c.filters.ocr.enabled, lambda s: OcrScorer),
    Stage("quality", "score", lambda c: c.filters.quality, lambda c: c.filters.quality.enabled,
          lambda s: QualityScorer),
    Stage("watermark", "score", lambda c: c.filters.watermark, lambda c: c.filters.watermark.enabled,
          lambda s: WatermarkScorer),
    *(_descriptor_stage(detector) for detector in DETECTORS if detector.stage),
    Stage("blip2", "caption", lambda c: c.caption.blip2, lambda c: c.caption.blip2.enabled, lambda s: Blip2Captioner),
    Stage("llava", "caption", lambda c: c.caption.llava, lambda c: c.caption.llava.enabled, lambda s: LlavaCaptioner),
    Stage("qwen_vl", "caption", lambda c: c.caption.qwen_vl, lambda c: c.caption.qwen_vl.enabled,
          lambda s: QwenVlCaptioner),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


def stages_of(phase: str, config: RunConfig) -> list[StageSpec]:
    """The enabled stages of ``phase``, in run order, with their config section and resources."""
    specs = []
    for stage in STAGES:
        if stage.phase == phase and stage.enabled(config):
            section = stage.section(config)
            specs.append(StageSpec(stage.name, stage.cls(section), section, config.resources.for_stage(stage.name)))
    return specs


def score_stages(config: RunConfig) -> list[StageSpec]:
    """Model stages of the score phase, in run order."""
    return stages_of("score", config)


def caption_stages(config: RunConfig) -> list[StageSpec]:
    """Recaptioning stages of the caption phase, in run order."""
    return stages_of("caption", config)


def check_stages(config: RunConfig, specs: list[StageSpec], start: tuple[str, ...] = BATCH_COLUMNS) -> None:
    """Fail at build time when a stage reads a column nothing before it writes, or resources name no stage."""
    available = set(start)
    for spec in specs:
        missing = [c for c in spec.reads if c not in available]
        if missing:
            raise ConfigError(f"stage {spec.name!r} reads {missing}, which no earlier stage writes; "
                              f"enable the stage that writes them or reorder")
        unknown = [c for c in spec.writes if c not in col.KNOWN_COLUMNS]
        if unknown:
            raise ConfigError(f"stage {spec.name!r} writes {unknown}, which are not in manifests/schema.py")
        available.update(spec.writes)
    from pipelines.run.decode import plan  # decode imports this module's config types; import at call time

    plan(config, specs)  # the shared decode planned from the stages' needs: a need no decode makes fails here


def check_resources(config: RunConfig) -> None:
    unknown = sorted(set(config.resources.stages) - set(STAGE_NAMES) - {"decode"})
    if unknown:
        raise ConfigError(f"resources.stages: {unknown} name no stage; stages are {', '.join(STAGE_NAMES)}, decode")
