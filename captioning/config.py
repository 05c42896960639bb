"""Which recaptioning models run on the kept samples, pinned by model id and revision."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from manifests.config import StrictModel

CAPTION_PLACEHOLDER = "{caption}"  # a prompt may quote the row's original alt-text here


class GenerationConfig(StrictModel):
    """Decoding settings. Greedy by default, so the same image and weights give the same caption."""

    max_new_tokens: int = Field(40, ge=1)
    min_new_tokens: int = Field(0, ge=0, description="= max_new_tokens forces a fixed length (benchmarks)")
    num_beams: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _min_le_max(self) -> GenerationConfig:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        return self


class CaptionerConfig(StrictModel):
    """What one vision-language captioner runs. A local directory in ``model`` is loaded as is."""

    enabled: bool = False
    model: str
    revision: str = Field(description="commit of the model repository; recorded in run.json")
    prompt: str = Field(description=f"instruction; {CAPTION_PLACEHOLDER} is replaced by the original caption")
    generation: GenerationConfig = GenerationConfig()
    short_prompt: str | None = Field(None, description="if set, a second, short caption with this prompt")
    short_generation: GenerationConfig = GenerationConfig(max_new_tokens=16)
    max_caption_chars: int = Field(300, ge=0, description="longest original caption quoted into a prompt")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="auto: bfloat16 on a GPU that supports it, else float16; float32 on CPU")


class Blip2CaptionerConfig(CaptionerConfig):
    """BLIP-2 continues the prompt; an empty prompt gives its plain caption."""

    model: str = "Salesforce/blip2-opt-2.7b"
    revision: str = "51572668da0eb669e01a189dc22abe6088589a24"
    prompt: str = ""
    generation: GenerationConfig = GenerationConfig(max_new_tokens=30)
    short_prompt: str | None = None


class LlavaCaptionerConfig(CaptionerConfig):
    """LLaVA gets its prompt through the checkpoint's chat template."""

    model: str = "llava-hf/llava-1.5-7b-hf"
    revision: str = "a272c74b2481d8aff3aa6fc2c4bf891fe57334fb"
    prompt: str = "Describe this image in one detailed sentence."
    generation: GenerationConfig = GenerationConfig(max_new_tokens=60)
    short_prompt: str | None = None


class CaptionConfig(StrictModel):
    """Recaptioners run on kept rows only, BLIP-2 first. None is enabled by default."""

    blip2: Blip2CaptionerConfig = Blip2CaptionerConfig()
    llava: LlavaCaptionerConfig = LlavaCaptionerConfig()
