"""Which model stages a config enables, in the order they run, and the column check done once at build time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from captioning.blip2 import Blip2Captioner
from captioning.llava import LlavaCaptioner
from filters.aesthetic import AestheticScorer
from filters.clip import ClipScorer
from filters.nsfw import nsfw_stage
from manifests import schema as col
from pipelines.config import ConfigError, RunConfig, StageResources

# Columns every score batch starts with (see phases.staged_dataset).
BATCH_COLUMNS = (col.SAMPLE_ID, col.IMAGE, col.CAPTION)

# Every stage name a resources.stages entry may use (enabled or not); tests/test_config.py checks it
# against the stages a config with everything enabled builds.
STAGE_NAMES = ("clip", "aesthetic", "nsfw", "pixel_hash", "phash", "minhash", "sscd", "blip2", "llava",
               "language", "ocr", "quality", "watermark")


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
        """What run.json records of the stage: its class and its config (model ids and revisions included)."""
        return {"class": f"{self.cls.__module__}.{self.cls.__qualname__}", "config": self.config.model_dump(mode="json")}


def _spec(config: RunConfig, name: str, cls: type, stage_config: Any) -> StageSpec:
    return StageSpec(name, cls, stage_config, config.resources.for_stage(name))


def score_stages(config: RunConfig) -> list[StageSpec]:
    """Model stages of the score phase, in run order. Each filter and dedup descriptor adds itself here."""
    specs: list[StageSpec] = []
    filters = config.filters
    # CLIP first: the aesthetic and CLIP-NSFW heads read its clip_embedding; open_nsfw reads pixels.
    if filters.clip.enabled:
        specs.append(_spec(config, "clip", ClipScorer, filters.clip))
    if filters.aesthetic.enabled:
        specs.append(_spec(config, "aesthetic", AestheticScorer, filters.aesthetic))
    if filters.nsfw.enabled:
        specs.append(_spec(config, "nsfw", nsfw_stage(filters.nsfw), filters.nsfw))
    specs += signal_stages(config)
    specs += dedup_stages(config)
    return specs


def signal_stages(config: RunConfig) -> list[StageSpec]:
    """Caption language, OCR, pixel quality and watermark: each reads the caption or the pixels only."""
    from filters.language import CaptionLanguageIdentifier
    from filters.ocr import OcrScorer
    from filters.quality import QualityScorer
    from filters.watermark import WatermarkScorer

    f = config.filters
    wanted = [("language", CaptionLanguageIdentifier, f.language), ("ocr", OcrScorer, f.ocr),
              ("quality", QualityScorer, f.quality), ("watermark", WatermarkScorer, f.watermark)]
    return [_spec(config, name, cls, section) for name, cls, section in wanted if section.enabled]


def dedup_stages(config: RunConfig) -> list[StageSpec]:
    """Descriptors the dedup phase reads: pixel hash, pHash, caption MinHash, SSCD embedding."""
    from dedup.minhash import CaptionMinHasher
    from dedup.phash import PerceptualHasher
    from dedup.pixels import PixelHasher
    from dedup.sscd import SscdEmbedder

    d = config.dedup
    wanted = [("pixel_hash", PixelHasher, d.exact, d.exact.enabled and d.exact.pixels),
              ("phash", PerceptualHasher, d.phash, d.phash.enabled),
              ("minhash", CaptionMinHasher, d.minhash, d.minhash.enabled),
              ("sscd", SscdEmbedder, d.sscd, d.sscd.enabled)]
    return [_spec(config, name, cls, section) for name, cls, section, on in wanted if on]


def caption_stages(config: RunConfig) -> list[StageSpec]:
    """Recaptioning stages of the caption phase, in run order."""
    specs: list[StageSpec] = []
    if config.caption.blip2.enabled:
        specs.append(_spec(config, "blip2", Blip2Captioner, config.caption.blip2))
    if config.caption.llava.enabled:
        specs.append(_spec(config, "llava", LlavaCaptioner, config.caption.llava))
    return specs


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


def check_resources(config: RunConfig) -> None:
    unknown = sorted(set(config.resources.stages) - set(STAGE_NAMES))
    if unknown:
        raise ConfigError(f"resources.stages: {unknown} name no stage; stages are {', '.join(STAGE_NAMES)}")
