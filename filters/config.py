"""Scoring models and the thresholds the decision applies to their scores.

Model stages are off by default so that a config without downloaded weights still runs; turn them on
with ``enabled: true`` (``thresher models list`` shows which weights a config needs and whether they
are present). Thresholds are LAION's published practice unless noted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from manifests import schema as col
from manifests.config import DECIDES, SCORES, StrictModel
from manifests.schema import Reason

if TYPE_CHECKING:
    import polars as pl

Device = Literal["auto", "cpu", "cuda"]
ISO_639_1 = r"^[a-z]{2}$"  # lower-case two-letter language codes, as caption_lang holds them

# LAION-Aesthetics V2 subsets were cut at these predictor (v2) scores; pick one as aesthetic.min_score.
AESTHETIC_PRESETS = {"laion_aesthetics_4.5": 4.5, "laion_aesthetics_5": 5.0, "laion_aesthetics_6": 6.0,
                     "laion_aesthetics_6.25": 6.25, "laion_aesthetics_6.5": 6.5}


def known_languages(codes: list[str] | None, field: str) -> list[str] | None:
    """``codes`` unchanged when lingua knows each (a code it cannot output would reject every caption)."""
    if not codes:
        return codes
    from lingua import IsoCode639_1

    unknown = []
    for code in codes:
        try:
            IsoCode639_1.from_str(code)
        except ValueError:
            unknown.append(code)
    if unknown:
        raise ValueError(f"{field}: {unknown} are not ISO 639-1 codes the language identifier (lingua) knows")
    return codes


class RulesConfig(StrictModel):
    """DataComp's basic rules; they need no model. Sizes are of the original image."""

    min_caption_words: int = Field(
        2, ge=0, description="reject caption_too_short below this many words (rows with no caption source are exempt)",
        json_schema_extra=DECIDES)
    min_caption_chars: int = Field(
        5, ge=0, description="reject caption_too_short below this many characters, after trimming whitespace",
        json_schema_extra=DECIDES)
    min_image_side: int = Field(
        200, ge=0, description="reject image_too_small when the shorter side is below this many pixels",
        json_schema_extra=DECIDES)
    max_aspect_ratio: float = Field(
        3.0, gt=0, description="reject aspect_ratio when the longer side exceeds this many times the shorter",
        json_schema_extra=DECIDES)
    drop_ai_generated: bool = Field(
        False, description="reject rows whose file declares generative-AI origin (IPTC DigitalSourceType, C2PA)",
        json_schema_extra=DECIDES)
    languages: list[Annotated[str, Field(pattern=ISO_639_1)]] | None = Field(
        None, description="keep captions in these ISO 639-1 languages (e.g. [en]); needs filters.language.enabled; "
                          "None: no language rule", json_schema_extra=DECIDES)

    @field_validator("languages")
    @classmethod
    def _known(cls, codes: list[str] | None) -> list[str] | None:
        return known_languages(codes, "filters.rules.languages")


class ClipScorerConfig(StrictModel):
    """CLIP image-text similarity (open_clip). The default is LAION-5B's filter: OpenAI ViT-B/32, keep
    cosine >= 0.28 (the threshold is calibrated for those weights). When the aesthetic or CLIP-NSFW heads
    are on, use ``model: ViT-L-14, pretrained: openai``: the heads were trained on its 768-d embedding."""

    enabled: bool = Field(False, description="run CLIP: writes clip_score and the clip_embedding the heads and "
                                             "dedup.semantic read")
    model: str = Field("ViT-B-32", description="open_clip architecture name")
    pretrained: str | None = Field("openai", description="open_clip pretrained tag or a checkpoint file; "
                                   "None builds random weights (tests and throughput benchmarks only)")
    architecture_file: str | None = Field(None, description="an open_clip model-config JSON registered before "
                                          "building; its file stem is the model name")
    precision: Literal["auto", "fp32", "bf16", "fp16", "fp8"] = Field(
        "auto", description="autocast dtype on GPU; auto: bf16 on CUDA, fp32 on CPU; fp8: the transformer "
                            "blocks' linears in float8 e4m3 (per-row scales; compute capability 9.0+: H100, "
                            "H200, B200), the rest bf16 - scores move by about 1e-2, see filters/fastpath.py")
    device: Device = Field("auto", description="where the model runs; auto: cuda when available, else cpu")
    seed: int = Field(0, description="seeds random weights so every actor builds the same model")
    cache_dir: str | None = Field(None, description="open_clip/Hugging Face download cache; None: their defaults")
    min_score: float | None = Field(0.28, ge=-1, le=1, description="reject below this cosine; None: no rule",
                                    json_schema_extra=DECIDES)
    compile: bool = Field(False, description="torch.compile the whole forward (normalisation and both towers); "
                                             "image batches are padded to powers of two so few shapes compile; slow "
                                             "first batches")



class WeightsFileConfig(StrictModel):
    """What a model whose weights are one file shares: on/off, the file or the folder it is under, the device."""

    enabled: bool = Field(False, description="run this model and write its score column")
    weights: str | None = Field(None, description="the weights file; None: its default place (see models list)")
    cache_dir: str | None = Field(None, description="weights folder; None: $THRESHER_CACHE_DIR or "
                                  "~/.cache/thresher")
    device: Device = Field("auto", description="where the model runs; auto: cuda when available, else cpu")


class AestheticConfig(WeightsFileConfig):
    """LAION aesthetic predictor on the CLIP image embedding: ``v2`` (the improved MLP, ViT-L/14) or the v1
    linear heads (``v1_l14``, ``v1_b32``). Scores are ~1-10; presets are in ``AESTHETIC_PRESETS``."""

    head: Literal["v2", "v1_l14", "v1_b32"] = Field(
        "v2", description="which LAION predictor; v2 and v1_l14 need filters.clip.model ViT-L-14, v1_b32 ViT-B-32")
    min_score: float | None = Field(None, description="reject below this score; None: score only",
                                    json_schema_extra=DECIDES)



class NsfwConfig(WeightsFileConfig):
    """NSFW probability. ``open_nsfw``: Yahoo's ResNet-50 on pixels (ONNX, ships with its package, works
    offline). ``clip_l14`` / ``clip_b32``: LAION's CLIP-based head on the ViT-L/14 or ViT-B/32 embedding,
    nearly free once CLIP ran. LAION drops punsafe >= 0.5."""

    backend: Literal["open_nsfw", "clip_l14", "clip_b32"] = Field(
        "open_nsfw", description="open_nsfw: on pixels, no CLIP needed; clip_l14 / clip_b32: LAION's head on "
                                 "filters.clip's ViT-L-14 / ViT-B-32 embedding")
    intra_op_threads: int | None = Field(None, ge=1, description="ONNX Runtime threads per actor")
    max_prob: float | None = Field(0.5, ge=0, le=1, description="reject at or above this; None: no rule",
                                   json_schema_extra=DECIDES)



class LanguageConfig(StrictModel):
    """Caption language by lingua (``lingua-language-detector``: its n-gram models ship in the wheel, no download).

    High-accuracy mode is right for captions: 100% on 144 short captions in 12 languages against 92% for
    low-accuracy mode (``bench/filters.py``); it holds all 75 languages' models, about 1 GB per actor.
    ``candidates`` restricts the detector to a set of languages (less memory, no confusion with the rest).
    The rule is ``filters.rules.languages``.
    """

    enabled: bool = Field(False, description="identify each caption's language into caption_lang")
    low_accuracy: bool = Field(False, description="lingua's low-accuracy mode: ~5x faster, worse on short text")
    candidates: list[Annotated[str, Field(pattern=ISO_639_1)]] | None = Field(
        None, min_length=2, description="ISO 639-1 codes to choose among; None: all of lingua's")

    @field_validator("candidates")
    @classmethod
    def _known(cls, codes: list[str] | None) -> list[str] | None:
        return known_languages(codes, "filters.language.candidates")


class OcrConfig(StrictModel):
    """Text in the image by RapidOCR (PP-OCRv4 detection + recognition ONNX models inside
    ``rapidocr-onnxruntime``), the T-MARS signals: how much of the image is text, and whether the caption
    just reads it. Thresholds are ours (T-MARS masks text rather than publishing a cut-off)."""

    enabled: bool = Field(False, description="run OCR: writes text_area_frac, caption_text_overlap and ocr_text")
    device: Device = Field("auto", description="where ONNX Runtime runs; auto: cuda when available, else cpu")
    det_max_side: int = Field(960, ge=32, description="images are shrunk so the longer side is at most this "
                              "for detection (never enlarged)")
    min_text_score: float = Field(0.5, ge=0, le=1, description="recognised lines below this confidence are ignored",
                                   json_schema_extra=SCORES)
    max_text_chars: int = Field(300, ge=0, description="ocr_text is truncated to this many characters",
                                json_schema_extra=SCORES)
    intra_op_threads: int | None = Field(None, ge=1, description="ONNX Runtime threads per actor")
    max_text_area_frac: float | None = Field(0.3, ge=0, le=1, description="reject text_dominated at or above "
                                             "this share of the image covered by text; None: no rule",
                                             json_schema_extra=DECIDES)
    max_caption_text_overlap: float | None = Field(
        0.6, ge=0, le=1, description="reject caption_reads_image at or above this share of caption words read "
                                     "in the image; None: no rule", json_schema_extra=DECIDES)



class QualityConfig(StrictModel):
    """Cheap pixel signals on the decoded image, no model: blur (variance of the Laplacian of the grey image at
    ``size``), QR codes (OpenCV's QRCodeDetectorAruco) and a low-information measure (grey-level entropy, bits).
    Every rule is off by default: what counts as blurry depends on the corpus (plot ``blur_var`` first)."""

    enabled: bool = Field(False, description="measure blur_var, qr_codes and grey_entropy")
    size: int = Field(256, ge=32, description="the longer side is resized to this before measuring blur and entropy")
    min_blur_var: float | None = Field(None, ge=0, description="reject blurry below this Laplacian variance",
                                        json_schema_extra=DECIDES)
    reject_qr: bool = Field(False, description="reject qr_code when a QR code is found", json_schema_extra=DECIDES)
    min_grey_entropy: float | None = Field(None, ge=0, le=8, description="reject uniform_image below this "
                                           "entropy of the 256-bin grey histogram (a flat colour is 0)",
                                            json_schema_extra=DECIDES)



class WatermarkConfig(WeightsFileConfig):
    """LAION's watermark classifier (LAION-5B-WatermarkDetection, ``watermark_model_v1.pt``): timm
    EfficientNet-B3 with a 1536-625-256-2 head, 256x256 input, ImageNet normalisation; writes the softmax
    of its "watermark" class. LAION-5B's aesthetic subsets drop pwatermark >= 0.8."""

    batch_size: int = Field(32, ge=1, description="images per forward pass")
    random_init: bool = Field(False, description="random weights instead of the file (tests and benchmarks only)")
    max_prob: float | None = Field(0.8, ge=0, le=1, description="reject at or above this; None: no rule",
                                   json_schema_extra=DECIDES)



# filters.preset -> the values it sets. Values the config sets itself win, and the resolved config.yaml
# shows the result. datacomp_basic is DataComp's "basic filtering" baseline (Gadre et al. 2023; their
# baselines/apply_filter.py load_uids_with_basic_filter_helper): English caption (fastText there, lingua
# here), more than 2 words and more than 5 characters (DataComp counts characters before trimming, we after),
# shorter image side >= 200 px, aspect ratio <= 3.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "datacomp_basic": {
        "rules": {"languages": ["en"], "min_caption_words": 3, "min_caption_chars": 6, "min_image_side": 200,
                  "max_aspect_ratio": 3.0},
        "language": {"enabled": True},
    },
}


def expand_preset(data: Any) -> Any:
    """``filters`` data with its preset's values filled in under the ones it sets itself."""
    if not isinstance(data, dict) or data.get("preset") is None:
        return data
    if data["preset"] not in PRESETS:
        return data  # the Literal field names the allowed presets
    data = dict(data)
    for section, values in PRESETS[data["preset"]].items():
        given = data.get(section)
        if given is None or isinstance(given, dict):
            data[section] = {**values, **(given or {})}
    return data


MODEL_SECTIONS = ("clip", "aesthetic", "nsfw", "watermark")

# The CLIP embedding width each head was trained on (ViT-L/14: 768, ViT-B/32: 512).
HEAD_WIDTHS = {"v2": 768, "v1_l14": 768, "v1_b32": 512, "clip_l14": 768, "clip_b32": 512}


class FiltersConfig(StrictModel):
    rules: RulesConfig = Field(RulesConfig(), description="caption length, image size and language rules")
    cache_dir: str | None = Field(None, description="default cache_dir of every model section that sets none")
    clip: ClipScorerConfig = Field(ClipScorerConfig(), description="the clip_score stage")
    aesthetic: AestheticConfig = Field(AestheticConfig(), description="the aesthetic_score stage (needs filters.clip)")
    nsfw: NsfwConfig = Field(NsfwConfig(), description="the nsfw_prob stage")
    preset: Literal["datacomp_basic"] | None = Field(None, description="fills in a published rule set (PRESETS); "
                                                     "values set here win")
    language: LanguageConfig = Field(
        LanguageConfig(), description="the caption_lang stage (for filters.rules.languages)")
    ocr: OcrConfig = Field(OcrConfig(), description="the OCR stage")
    quality: QualityConfig = Field(QualityConfig(), description="the blur, QR-code and entropy stage")
    watermark: WatermarkConfig = Field(WatermarkConfig(), description="the watermark_prob stage")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        return expand_preset(data)

    @model_validator(mode="after")
    def _languages_need_the_stage(self):
        if self.rules.languages and not self.language.enabled:
            raise ValueError("filters.rules.languages needs the caption language stage: set "
                             "filters.language.enabled=true (or drop the rule)")
        return self

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
    field: str = ""  # its field in that section (filters.SECTION.FIELD), "" when fixed (quality's QR rule)

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
                                            section="clip", field="min_score")),
        (config.aesthetic.enabled, ThresholdRule(col.AESTHETIC_SCORE, Reason.AESTHETIC_LOW,
                                                 minimum=config.aesthetic.min_score, section="aesthetic",
                                                 field="min_score")),
        (config.nsfw.enabled, ThresholdRule(col.NSFW_PROB, Reason.NSFW, maximum=config.nsfw.max_prob,
                                            section="nsfw", field="max_prob")),
        (config.ocr.enabled, ThresholdRule(col.TEXT_AREA_FRAC, Reason.TEXT_DOMINATED,
                                           maximum=config.ocr.max_text_area_frac, section="ocr",
                                           field="max_text_area_frac")),
        (config.ocr.enabled, ThresholdRule(col.CAPTION_TEXT_OVERLAP, Reason.CAPTION_READS_IMAGE,
                                           maximum=config.ocr.max_caption_text_overlap, section="ocr",
                                           field="max_caption_text_overlap")),
        (config.quality.enabled, ThresholdRule(col.BLUR_VAR, Reason.BLURRY, minimum=config.quality.min_blur_var,
                                               section="quality", field="min_blur_var")),
        (config.quality.enabled and config.quality.reject_qr,
         ThresholdRule(col.QR_CODES, Reason.QR_CODE, maximum=1.0, section="quality")),
        (config.quality.enabled, ThresholdRule(col.GREY_ENTROPY, Reason.UNIFORM_IMAGE,
                                               minimum=config.quality.min_grey_entropy, section="quality",
                                               field="min_grey_entropy")),
        (config.watermark.enabled, ThresholdRule(col.WATERMARK_PROB, Reason.WATERMARK,
                                                 maximum=config.watermark.max_prob, section="watermark",
                                                 field="max_prob")),
    ]
    return [rule for enabled, rule in candidates
            if (enabled or not enabled_only) and (rule.minimum is not None or rule.maximum is not None)]
