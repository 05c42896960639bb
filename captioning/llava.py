"""LLaVA recaptions: the instruction goes through the checkpoint's chat template with one image."""

from __future__ import annotations

from typing import Any

import numpy as np

from captioning.config import LlavaCaptionerConfig
from captioning.recaption import recaption
from captioning.vlm import Vlm, load_vlm
from manifests import schema as col

# LLaVA-1.5's conversation format, for a processor saved without a chat template.
LLAVA_15_FORMAT = "USER: <image>\n{instruction} ASSISTANT:"


def load_llava(config: LlavaCaptionerConfig) -> Vlm:
    from transformers import LlavaForConditionalGeneration

    return load_vlm(LlavaForConditionalGeneration, config)


def llava_prompt(processor: Any, instruction: str) -> str:
    if not getattr(processor, "chat_template", None):
        return LLAVA_15_FORMAT.format(instruction=instruction)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


class LlavaCaptioner:
    """Reads image (and caption, for prompts that quote it); writes caption_llava, caption_llava_short and
    caption_status. An undecodable image, an empty or a repetitive output gets a status and no caption."""

    reads = (col.IMAGE,)
    writes = (col.CAPTION_LLAVA, col.CAPTION_LLAVA_SHORT, col.CAPTION_STATUS, *col.CAPTION_TOKENS["llava"])

    def __init__(self, config: LlavaCaptionerConfig) -> None:
        self.config = config
        self.vlm = load_llava(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return recaption(self.vlm, self.config, batch, "llava", (col.CAPTION_LLAVA, col.CAPTION_LLAVA_SHORT),
                         llava_prompt)
