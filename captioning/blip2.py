"""BLIP-2 recaptions: the OPT language model continues the prompt after the image's query tokens."""

from __future__ import annotations

from typing import Any

import numpy as np

from captioning.config import Blip2CaptionerConfig
from captioning.recaption import recaption
from captioning.vlm import Vlm, load_vlm
from manifests import schema as col


def load_blip2(config: Blip2CaptionerConfig) -> Vlm:
    from transformers import Blip2ForConditionalGeneration

    vlm = load_vlm(Blip2ForConditionalGeneration, config)
    image_token = vlm.processor.tokenizer.convert_tokens_to_ids(str(vlm.processor.image_token))
    if vlm.model.config.image_token_index != image_token:
        # Checkpoints saved before image placeholder tokens existed would caption without seeing the image.
        raise ValueError(f"{config.model}@{config.revision}: the model's image_token_index "
                         f"({vlm.model.config.image_token_index}) is not the processor's image token ({image_token}); "
                         f"pin a revision of the checkpoint saved with image tokens (caption.blip2.revision)")
    if getattr(vlm.processor, "num_query_tokens", None) is None:
        # Older processor configs omit it; without it the prompt gets no image placeholder tokens.
        vlm.processor.num_query_tokens = vlm.model.config.num_query_tokens
    return vlm


def blip2_prompt(processor: Any, instruction: str) -> str:
    """BLIP-2 takes the instruction as plain text (empty: an unconditional caption)."""
    return instruction


class Blip2Captioner:
    """Reads image (and caption, for prompts that quote it); writes caption_blip2, caption_blip2_short and
    caption_status. An undecodable image, an empty or a repetitive output gets a status and no caption."""

    reads = (col.IMAGE,)
    writes = (col.CAPTION_BLIP2, col.CAPTION_BLIP2_SHORT, col.CAPTION_STATUS, *col.CAPTION_TOKENS["blip2"])

    def __init__(self, config: Blip2CaptionerConfig) -> None:
        self.config = config
        self.vlm = load_blip2(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return recaption(self.vlm, self.config, batch, "blip2", (col.CAPTION_BLIP2, col.CAPTION_BLIP2_SHORT),
                         blip2_prompt)
