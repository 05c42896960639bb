"""Qwen-VL-class recaptions (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): the instruction through the checkpoint's chat
template with one image, the image's area bounded so its visual tokens are too."""

from __future__ import annotations

from typing import Any

import numpy as np

from captioning.config import QwenVlCaptionerConfig
from captioning.recaption import recaption
from captioning.vlm import Vlm, load_vlm
from manifests import schema as col


def load_qwen_vl(config: QwenVlCaptionerConfig) -> Vlm:
    """The checkpoint's own class (its config names Qwen2/2.5/3-VL), with the image area bounded."""
    from transformers import AutoModelForImageTextToText

    vlm = load_vlm(AutoModelForImageTextToText, config)
    bound_pixels(vlm.processor.image_processor, config.min_pixels, config.max_pixels)
    return vlm


def bound_pixels(image_processor: Any, min_pixels: int, max_pixels: int) -> None:
    """Qwen's processors resize each image to a multiple of the patch grid with its area in [min, max]; the
    bounds are ``size``'s shortest_edge / longest_edge (in pixels, not edges: transformers' naming)."""
    image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}


def qwen_prompt(processor: Any, instruction: str) -> str:
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


class QwenVlCaptioner:
    """Reads image (and caption, for prompts that quote it); writes caption_qwen_vl, caption_qwen_vl_short,
    caption_status and the caption's token counts. An undecodable image, an empty, repetitive or refused answer
    gets a status and no caption; an answer cut at max_new_tokens is kept with status truncated."""

    reads = (col.IMAGE,)
    writes = (col.CAPTION_QWEN_VL, col.CAPTION_QWEN_VL_SHORT, col.CAPTION_STATUS, *col.CAPTION_TOKENS["qwen_vl"])

    def __init__(self, config: QwenVlCaptionerConfig) -> None:
        self.config = config
        self.vlm = load_qwen_vl(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return recaption(self.vlm, self.config, batch, "qwen_vl", (col.CAPTION_QWEN_VL, col.CAPTION_QWEN_VL_SHORT),
                         qwen_prompt)
