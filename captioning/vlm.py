"""The model seam shared by the captioners: load once, generate for a batch of images and prompts.

torch and transformers are imported inside these functions, so the driver never loads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from captioning.config import CaptionerConfig, GenerationConfig
from captioning.weights import resolve_weights
from manifests.images import decode_rgb


@dataclass
class Vlm:
    model: Any  # a transformers *ForConditionalGeneration in eval mode
    processor: Any
    device: Any  # torch.device
    dtype: Any  # torch.dtype of the weights and pixel values


def pick_device_dtype(dtype: str) -> tuple[Any, Any]:
    """GPU in bfloat16 (float16 where bf16 is unsupported), CPU in float32, unless ``dtype`` says otherwise."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu"), getattr(torch, dtype) if dtype != "auto" else torch.float32
    if dtype != "auto":
        return torch.device("cuda"), getattr(torch, dtype)
    return torch.device("cuda"), torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_vlm(model_cls: type, config: CaptionerConfig) -> Vlm:
    """Load ``model_cls`` and its processor from the resolved local weights; left padding for batching."""
    from transformers import AutoProcessor

    path = resolve_weights(config)
    device, dtype = pick_device_dtype(config.dtype)
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    processor.tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    model = model_cls.from_pretrained(path, dtype=dtype, local_files_only=True).to(device).eval()
    return Vlm(model, processor, device, dtype)


def decode_images(blobs: np.ndarray) -> list[Image.Image | None]:
    """Encoded image bytes -> RGB images; None where the bytes cannot be decoded."""
    return [decode_rgb(blob) for blob in blobs]


def generate_ids(vlm: Vlm, images: list[Image.Image], prompts: list[str], gen: GenerationConfig) -> Any:
    """Token ids generated after each prompt, shape (batch, new tokens); greedy unless num_beams > 1."""
    import torch

    inputs = vlm.processor(images=images, text=prompts, padding=True, return_tensors="pt").to(vlm.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(vlm.dtype)
    tokenizer = vlm.processor.tokenizer
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens,
                                 num_beams=gen.num_beams, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[:, inputs["input_ids"].shape[1]:]


def generate_texts(vlm: Vlm, images: list[Image.Image], prompts: list[str], gen: GenerationConfig) -> list[str]:
    ids = generate_ids(vlm, images, prompts, gen)
    return vlm.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
