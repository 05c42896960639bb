"""Qwen-VL-class captioners (Qwen2.5-VL, Qwen3-VL) on tiny random weights: parity with the reference usage of
transformers on the same weights, the pixel bound, prompt presets, and caption records."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from captioning.config import PROMPT_PRESETS, GenerationConfig, QwenVlCaptionerConfig
from captioning.postprocess import CaptionStatus
from captioning.qwen_vl import QwenVlCaptioner, load_qwen_vl
from manifests import schema as col

GEN = GenerationConfig(max_new_tokens=6)


@pytest.fixture(params=["qwen2_5_vl", "qwen3_vl"])
def qwen_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"tiny_{request.param}")


def _reference_texts(model_dir: Path, images: list[Image.Image], instruction: str, max_new_tokens: int) -> list[str]:
    """The model card's usage, one image at a time: the processor's chat template tokenises the image message."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
    processor.image_processor.size = {"shortest_edge": QwenVlCaptionerConfig().min_pixels,
                                      "longest_edge": QwenVlCaptionerConfig().max_pixels}
    model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True).eval()
    texts = []
    for image in images:
        messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": instruction}]}]
        inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True,
                                               return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        texts.append(processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0])
    return texts


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_batched_captions_equal_the_reference_usage_one_image_at_a_time(qwen_dir: Path, photos: list) -> None:
    from captioning.vlm import generate

    config = QwenVlCaptionerConfig(enabled=True, model=str(qwen_dir), generation=GEN)
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in photos]
    vlm = load_qwen_vl(config)
    from captioning.qwen_vl import qwen_prompt

    ours = generate(vlm, images, [qwen_prompt(vlm.processor, config.instruction())] * len(images), GEN).texts
    assert ours == _reference_texts(qwen_dir, images, config.instruction(), GEN.max_new_tokens)
    assert len(set(ours)) > 1  # the images reach the model: different photos, different answers


def test_the_image_area_is_bounded_so_a_large_image_cannot_fill_the_context(tiny_qwen2_5_vl: Path) -> None:
    config = QwenVlCaptionerConfig(enabled=True, model=str(tiny_qwen2_5_vl), generation=GEN,
                                   min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    vlm = load_qwen_vl(config)
    big, small = Image.new("RGB", (2400, 1800), (120, 30, 200)), Image.new("RGB", (20, 30), (10, 200, 40))
    grid = vlm.processor.image_processor(images=[big, small], return_tensors="pt")["image_grid_thw"]
    tokens = (grid.prod(dim=1) // 4).tolist()  # one visual token per 2x2 merged 14 px patches
    assert tokens[0] <= 64 and tokens[0] >= 48  # 4.3 MP -> at most max_pixels
    assert tokens[1] >= 16  # a thumbnail is scaled up to min_pixels
    out = QwenVlCaptioner(config)({col.IMAGE: np.array([_jpeg(big)], dtype=object)})
    prompt_tokens = out[col.CAPTION_TOKENS["qwen_vl"][0]][0]
    assert tokens[0] < prompt_tokens < tokens[0] + 40  # the image's tokens plus the instruction's


def test_presets_pick_the_instruction_and_a_stray_prompt_is_refused() -> None:
    assert QwenVlCaptionerConfig().instruction() == PROMPT_PRESETS["alt_text"]
    assert QwenVlCaptionerConfig(preset="dense").instruction() == PROMPT_PRESETS["dense"]
    assert "{caption}" in QwenVlCaptionerConfig(preset="rewrite").instruction()
    assert QwenVlCaptionerConfig(preset="custom", prompt="Say what you see.").instruction() == "Say what you see."
    with pytest.raises(ValidationError, match="preset: custom"):
        QwenVlCaptionerConfig(prompt="Say what you see.")
    with pytest.raises(ValidationError, match="needs a prompt"):
        QwenVlCaptionerConfig(preset="custom")
    with pytest.raises(ValidationError, match="min_pixels"):
        QwenVlCaptionerConfig(min_pixels=10 * 28 * 28, max_pixels=5 * 28 * 28)


def test_records_count_tokens_and_flag_a_caption_cut_at_the_limit(tiny_qwen3_vl: Path, photos: list) -> None:
    config = QwenVlCaptionerConfig(enabled=True, model=str(tiny_qwen3_vl),
                                   generation=GenerationConfig(max_new_tokens=5, min_new_tokens=5))
    out = QwenVlCaptioner(config)({col.IMAGE: np.array(photos + [b"not an image"], dtype=object)})
    prompt_col, output_col = col.CAPTION_TOKENS["qwen_vl"]
    assert out[output_col].tolist() == [5] * len(photos) + [None]  # forced to the limit, so never ended
    assert all(n > 20 for n in out[prompt_col][:-1]) and out[prompt_col][-1] is None
    statuses = out[col.CAPTION_STATUS].tolist()
    assert all(s.startswith("qwen_vl:") for s in statuses)  # none ended by itself: flagged, never plain ok
    kept = [c for c, s in zip(out[col.CAPTION_QWEN_VL], statuses) if s == f"qwen_vl:{CaptionStatus.TRUNCATED}"]
    assert kept and all(isinstance(c, str) and c for c in kept)  # a cut caption stays, flagged


def test_a_batch_whose_generation_fails_records_error_on_every_row(tiny_qwen2_5_vl: Path, photos: list) -> None:
    stage = QwenVlCaptioner(QwenVlCaptionerConfig(enabled=True, model=str(tiny_qwen2_5_vl), generation=GEN))

    def out_of_memory(**_):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    stage.vlm.model.generate = out_of_memory  # the fault a real GPU raises mid-run
    out = stage({col.IMAGE: np.array(photos[:2] + [b"x"], dtype=object)})
    assert out[col.CAPTION_STATUS].tolist() == ["qwen_vl:error", "qwen_vl:error", "qwen_vl:failed_to_decode"]
    assert out[col.CAPTION_QWEN_VL].tolist() == [None, None, None]
