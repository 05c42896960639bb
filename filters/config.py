"""Scoring models and the thresholds the decision applies to their scores.

Model stages are off by default so that a config without downloaded weights still runs; turn them on
with ``enabled: true`` (``thresher models list`` shows which weights a config needs and whether they
are present). Thresholds are LAION's published practice unless noted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from manifests import schema as col
from manifests.config import StrictModel
from manifests.schema import Reason

if TYPE_CHECKING:
    import polars as pl

Device = Literal["auto", "cpu", "cuda"]

# LAION-Aesthetics V2 subsets were cut at these predictor (v2) scores; pick one as aesthetic.min_score.
AESTHETIC_PRESETS = {"laion_aesthetics_4.5": 4.5, "laion_aesthetics_5": 5.0, "laion_aesthetics_6": 6.0,
                     "laion_aesthetics_6.25": 6.25, "laion_aesthetics_6.5": 6.5}


class RulesConfig(StrictModel):
    """DataComp's basic rules; they need no model. Sizes are of the original image."""

    min_caption_words: int = Field(2, ge=0)
    min_caption_chars: int = Field(5, ge=0)
    min_image_side: int = Field(200, ge=0)
    max_aspect_ratio: float = Field(3.0, gt=0)
    drop_ai_generated: bool = Field(
        False, description="reject rows whose file declares generative-AI origin (IPTC DigitalSourceType, C2PA)")


class ClipScorerConfig(StrictModel):
    """CLIP image-text similarity (open_clip). The default is LAION-5B's filter: OpenAI ViT-B/32, keep
    cosine >= 0.28 (the threshold is calibrated for those weights). When the aesthetic or CLIP-NSFW heads
    are on, use ``model: ViT-L-14, pretrained: openai``: the heads were trained on its 768-d embedding."""

    enabled: bool = False
    model: str = Field("ViT-B-32", description="open_clip architecture name")
    pretrained: str | None = Field("openai", description="open_clip pretrained tag or a checkpoint file; "
                                   "None builds random weights (tests and throughput benchmarks only)")
    architecture_file: str | None = Field(None, description="an open_clip model-config JSON registered before "
                                          "building; its file stem is the model name")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast dtype on GPU; auto: bf16 on CUDA, fp32 on CPU")
    device: Device = "auto"
    seed: int = Field(0, description="seeds random weights so every actor builds the same model")
    cache_dir: str | None = Field(None, description="open_clip/Hugging Face download cache; None: their defaults")
    min_score: float | None = Field(0.28, ge=-1, le=1, description="reject below this cosine; None: no rule")
    compile: bool = Field(False, description="torch.compile the image tower (slow first batches; GPU throughput)")



class WeightsFileConfig(StrictModel):
    """What a model whose weights are one file shares: on/off, the file or the folder it is under, the device."""

    enabled: bool = False
    weights: str | None = Field(None, description="the weights file; None: its default place (see models list)")
    cache_dir: str | None = Field(None, description="weights folder; None: $THRESHER_CACHE_DIR or "
                                  "~/.cache/thresher")
    device: Device = "auto"


class AestheticConfig(WeightsFileConfig):
    """LAION aesthetic predictor on the CLIP image embedding: ``v2`` (the improved MLP, ViT-L/14) or the v1
    linear heads (``v1_l14``, ``v1_b32``). Scores are ~1-10; presets are in ``AESTHETIC_PRESETS``."""

    head: Literal["v2", "v1_l14", "v1_b32"] = "v2"
    min_score: float | None = Field(None, description="reject below this score; None: score only")



class NsfwConfig(WeightsFileConfig):
    """NSFW probability. ``open_nsfw``: Yahoo's ResNet-50 on pixels (ONNX, ships with its package, works
    offline). ``clip_l14`` / ``clip_b32``: LAION's CLIP-based head on the ViT-L/14 or ViT-B/32 embedding,
    nearly free once CLIP ran. LAION drops punsafe >= 0.5."""

    backend: Literal["open_nsfw", "clip_l14", "clip_b32"] = "open_nsfw"
    intra_op_threads: int | None = Field(None, ge=1, description="ONNX Runtime threads per actor")
    max_prob: float | None = Field(0.5, ge=0, le=1, description="reject at or above this; None: no rule")



MODEL_SECTIONS = ("clip", "aesthetic", "nsfw")

# The CLIP embedding width each head was trained on (ViT-L/14: 768, ViT-B/32: 512).
HEAD_WIDTHS = {"v2": 768, "v1_l14": 768, "v1_b32": 512, "clip_l14": 768, "clip_b32": 512}


class FiltersConfig(StrictModel):
    rules: RulesConfig = RulesConfig()
    cache_dir: str | None = Field(None, description="default cache_dir of every model section that sets none")
    clip: ClipScorerConfig = ClipScorerConfig()
    aesthetic: AestheticConfig = AestheticConfig()
    nsfw: NsfwConfig = NsfwConfig()

    @model_validator(mode="before")
    @classmethod
    def _share_cache_dir(cls, data: Any) -> Any:
        """One ``filters.cache_dir`` fills the sections' own, so run.json records where each model came from."""
        if not isinstance(data, dict) or data.get("cache_dir") is None:
            return data
        data = dict(data)
        for name in MODEL_SECTIONS:
            section = data.get(name)
            if section is None or isinstance(section, dict):
                section = dict(section or {})
                section.setdefault("cache_dir", data["cache_dir"])
                data[name] = section
        return data


@dataclass(frozen=True)
class ThresholdRule:
    """Reject with ``reason`` when ``column`` is below ``minimum`` or at/above ``maximum``."""

    column: str
    reason: str
    minimum: float | None = None
    maximum: float | None = None
    section: str = ""  # the filters section that sets it

    def violated(self) -> pl.Expr:
        import polars as pl  # a config is read where polars is absent (the GPU bench); only the decision needs it

        value = pl.col(self.column)
        fails = pl.lit(False)
        if self.minimum is not None:
            fails = fails | (value < self.minimum)
        if self.maximum is not None:
            fails = fails | (value >= self.maximum)
        return fails.fill_null(False)


def threshold_rules(config: FiltersConfig, enabled_only: bool = True) -> list[ThresholdRule]:
    """The score thresholds of the model sections, one per section that sets one: the only list. With
    ``enabled_only=False`` also those of sections switched off (what they would apply)."""
    candidates = [
        (config.clip.enabled, ThresholdRule(col.CLIP_SCORE, Reason.CLIP_LOW, minimum=config.clip.min_score,
                                            section="clip")),
        (config.aesthetic.enabled, ThresholdRule(col.AESTHETIC_SCORE, Reason.AESTHETIC_LOW,
                                                 minimum=config.aesthetic.min_score, section="aesthetic")),
        (config.nsfw.enabled, ThresholdRule(col.NSFW_PROB, Reason.NSFW, maximum=config.nsfw.max_prob,
                                            section="nsfw")),
    ]
    return [rule for enabled, rule in candidates
            if (enabled or not enabled_only) and (rule.minimum is not None or rule.maximum is not None)]
