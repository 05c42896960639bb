"""Which recaptioning models run on the kept samples, pinned by model id and revision."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from manifests.config import StrictModel

CAPTION_PLACEHOLDER = "{caption}"  # a prompt may quote the row's original alt-text here

# Field descriptions the captioners share: a subclass that changes a default restates the field, and
# pydantic does not carry the parent's description over to it.
MODEL_DOC = "Hugging Face model id, or a local directory loaded as it is"
REVISION_DOC = "commit of the model repository; recorded in run.json"
PROMPT_DOC = f"instruction; {CAPTION_PLACEHOLDER} is replaced by the original caption"
GENERATION_DOC = "how the caption (caption_<model>) is generated"
SHORT_PROMPT_DOC = "if set, a second, short caption with this prompt; None: no short caption"


class GenerationConfig(StrictModel):
    """Decoding settings. Greedy by default, so the same image and weights give the same caption."""

    max_new_tokens: int = Field(40, ge=1, description="the longest caption, in tokens")
    min_new_tokens: int = Field(0, ge=0, description="= max_new_tokens forces a fixed length (benchmarks)")
    num_beams: int = Field(1, ge=1, description="beam search width; 1: greedy decoding")
    repetition_penalty: float | None = Field(
        None, gt=0, description="above 1 discourages repeating a token (Qwen-VL ships 1.05); unset: the checkpoint's own")
    no_repeat_ngram_size: int | None = Field(
        None, ge=0, description="no n-gram of this many tokens twice in a caption; unset: the checkpoint's own")

    @model_validator(mode="after")
    def _min_le_max(self) -> GenerationConfig:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        return self


class CaptionerConfig(StrictModel):
    """What one vision-language captioner runs. A local directory in ``model`` is loaded as is."""

    enabled: bool = Field(False, description="caption the kept rows with this model")
    model: str = Field(description=MODEL_DOC)
    revision: str = Field(description=REVISION_DOC)
    prompt: str = Field(description=PROMPT_DOC)
    generation: GenerationConfig = Field(GenerationConfig(), description=GENERATION_DOC)
    short_prompt: str | None = Field(None, description=SHORT_PROMPT_DOC)
    short_generation: GenerationConfig = Field(
        GenerationConfig(max_new_tokens=16), description="how the short caption (caption_<model>_short) is generated")
    max_caption_chars: int = Field(300, ge=0, description="longest original caption quoted into a prompt")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto: bfloat16 on a GPU that supports it, else float16; float32 on CPU")

    def instruction(self) -> str:
        """The instruction of the long caption (a preset's text, for captioners that have presets)."""
        return self.prompt


class Blip2CaptionerConfig(CaptionerConfig):
    """BLIP-2 continues the prompt; an empty prompt gives its plain caption."""

    model: str = Field("Salesforce/blip2-opt-2.7b", description=MODEL_DOC)
    revision: str = Field("51572668da0eb669e01a189dc22abe6088589a24", description=REVISION_DOC)
    prompt: str = Field("", description=PROMPT_DOC + "; empty: BLIP-2's plain caption")
    generation: GenerationConfig = Field(GenerationConfig(max_new_tokens=30), description=GENERATION_DOC)
    short_prompt: str | None = Field(None, description=SHORT_PROMPT_DOC)


class LlavaCaptionerConfig(CaptionerConfig):
    """LLaVA gets its prompt through the checkpoint's chat template."""

    model: str = Field("llava-hf/llava-1.5-7b-hf", description=MODEL_DOC)
    revision: str = Field("a272c74b2481d8aff3aa6fc2c4bf891fe57334fb", description=REVISION_DOC)
    prompt: str = Field("Describe this image in one detailed sentence.", description=PROMPT_DOC)
    generation: GenerationConfig = Field(GenerationConfig(max_new_tokens=60), description=GENERATION_DOC)
    short_prompt: str | None = Field(None, description=SHORT_PROMPT_DOC)


# Instructions for chat models (Qwen-VL, LLaVA-OneVision), each the kind of caption a training set wants.
PROMPT_PRESETS = {
    "alt_text": "Write one short sentence of alt-text for this image, under 20 words. Say only what is visible.",
    "dense": "Describe this image in detail in one paragraph: the main subject, what it is doing, the setting, "
             "colours and lighting, any visible text (quoted), and the kind of picture (photo, drawing, render).",
    "rewrite": "The original alt-text of this image is: \"" + CAPTION_PLACEHOLDER + "\". Write one sentence that "
               "describes the image, keeping names and facts from the alt-text that the image agrees with.",
}


class QwenVlCaptionerConfig(CaptionerConfig):
    """A Qwen-VL-class chat model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL; the checkpoint's config picks the class)
    through its chat template. ``preset`` picks the instruction; ``custom`` uses ``prompt``. The image is
    resized so its pixel count lies within [min_pixels, max_pixels], which bounds its visual tokens (one per
    28x28 pixels on Qwen2/2.5-VL, 32x32 on Qwen3-VL), so a 4 MP image cannot fill the context."""

    model: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description=MODEL_DOC)
    revision: str = Field("cc594898137f460bfe9f0759e9844b3ce807cfb5", description=REVISION_DOC)
    preset: Literal["alt_text", "dense", "rewrite", "custom"] = Field(
        "alt_text", description="alt_text: one short sentence; dense: a detailed paragraph; rewrite: improve the "
                                "original alt-text (quoted in the prompt); custom: the prompt field as written")
    prompt: str = Field("", description=PROMPT_DOC + "; used only with preset: custom")
    generation: GenerationConfig = Field(GenerationConfig(max_new_tokens=64), description=GENERATION_DOC)
    short_prompt: str | None = Field(None, description=SHORT_PROMPT_DOC)
    min_pixels: int = Field(64 * 28 * 28, ge=28 * 28, description="smallest image area fed to the model, in pixels")
    max_pixels: int = Field(512 * 28 * 28, ge=28 * 28, description="largest image area fed to the model, in pixels "
                                                                     "(512 visual tokens on Qwen2.5-VL)")

    @model_validator(mode="after")
    def _instruction(self) -> QwenVlCaptionerConfig:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) exceeds max_pixels ({self.max_pixels})")
        if self.preset == "custom" and not self.prompt.strip():
            raise ValueError("preset: custom needs a prompt")
        if self.preset != "custom" and self.prompt and self.prompt != PROMPT_PRESETS[self.preset]:
            raise ValueError(f"prompt is set but preset is {self.preset!r}: set preset: custom to use your prompt")
        return self

    def instruction(self) -> str:
        return self.prompt if self.preset == "custom" else PROMPT_PRESETS[self.preset]


class CaptionConfig(StrictModel):
    """Recaptioners run on kept rows only, in this order. None is enabled by default."""

    blip2: Blip2CaptionerConfig = Field(
        Blip2CaptionerConfig(), description="BLIP-2: writes caption_blip2 (and caption_blip2_short)")
    llava: LlavaCaptionerConfig = Field(
        LlavaCaptionerConfig(), description="LLaVA: writes caption_llava (and caption_llava_short)")
    qwen_vl: QwenVlCaptionerConfig = Field(
        QwenVlCaptionerConfig(), description="Qwen-VL: writes caption_qwen_vl (and caption_qwen_vl_short)")
