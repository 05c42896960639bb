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


def model_inputs(vlm: Vlm, images: list[Image.Image], prompts: list[str]) -> Any:
    """The processor's batch on the model's device, pixel values in the model's dtype; prompts left-padded."""
    inputs = vlm.processor(images=images, text=prompts, padding=True, return_tensors="pt").to(vlm.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(vlm.dtype)
    return inputs


def generate_from(vlm: Vlm, inputs: Any, gen: GenerationConfig) -> Any:
    """Token ids generated after each prompt of ``inputs``, shape (batch, new tokens)."""
    import torch

    unset_is_checkpoints = {k: v for k in ("repetition_penalty", "no_repeat_ngram_size")
                            if (v := getattr(gen, k)) is not None}
    with torch.inference_mode():
        out = vlm.model.generate(**inputs, max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens,
                                 num_beams=gen.num_beams, do_sample=False, **unset_is_checkpoints,
                                 pad_token_id=vlm.processor.tokenizer.pad_token_id)
    return out[:, inputs["input_ids"].shape[1]:]


@dataclass
class Generated:
    """One batch's answers with what a caption record keeps of each: token counts and whether it was cut."""

    texts: list[str]
    prompt_tokens: list[int]  # the prompt as the model saw it, image tokens included
    output_tokens: list[int]  # up to and including the end-of-text token
    truncated: list[bool]  # stopped at max_new_tokens without an end-of-text token


def end_token_ids(vlm: Vlm) -> set[int]:
    """Every id that ends generation: the tokenizer's and the checkpoint's generation config's."""
    ids = {vlm.processor.tokenizer.eos_token_id}
    configured = getattr(vlm.model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {i for i in ids if i is not None}


def output_lengths(ids: Any, ends: set[int]) -> tuple[list[int], list[bool]]:
    """(tokens up to and including the first end token, no end token) per row of generated ``ids``; a row
    that ended before the batch's longest is padded after its end token, so only rows with none were cut."""
    lengths, cut = [], []
    for row in ids.tolist():
        stop = next((i for i, t in enumerate(row) if t in ends), None)
        lengths.append(len(row) if stop is None else stop + 1)
        cut.append(stop is None)
    return lengths, cut


def generate(vlm: Vlm, images: list[Image.Image], prompts: list[str], gen: GenerationConfig) -> Generated:
    """Generate for a batch; the texts are decoded without special tokens."""
    inputs = model_inputs(vlm, images, prompts)
    prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
    ids = generate_from(vlm, inputs, gen)
    tokenizer = vlm.processor.tokenizer
    lengths, cut = output_lengths(ids, end_token_ids(vlm))
    return Generated(tokenizer.batch_decode(ids, skip_special_tokens=True), prompt_tokens, lengths, cut)
