"""The captioner stages on dict batches (no Ray), with tiny random models loaded through the real seam."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from captioning.blip2 import Blip2Captioner, blip2_prompt, load_blip2
from captioning.config import Blip2CaptionerConfig, GenerationConfig, LlavaCaptionerConfig, QwenVlCaptionerConfig
from captioning.llava import LlavaCaptioner, llava_prompt, load_llava
from captioning.qwen_vl import QwenVlCaptioner, load_qwen_vl, qwen_prompt
from captioning.postprocess import CaptionStatus
from captioning.vlm import decode_images
from manifests import schema as col
from support.random_models import generate_ids

FORCED = GenerationConfig(max_new_tokens=7, min_new_tokens=7)
BACKENDS = {
    "blip2": (Blip2CaptionerConfig, load_blip2, blip2_prompt, Blip2Captioner),
    "llava": (LlavaCaptionerConfig, load_llava, llava_prompt, LlavaCaptioner),
    "qwen2_5_vl": (QwenVlCaptionerConfig, load_qwen_vl, qwen_prompt, QwenVlCaptioner),
    "qwen3_vl": (QwenVlCaptionerConfig, load_qwen_vl, qwen_prompt, QwenVlCaptioner),
}
LABELS = {"qwen2_5_vl": "qwen_vl", "qwen3_vl": "qwen_vl"}  # both families are the one qwen_vl stage
# Prompts of different lengths, so a batch of them is left-padded.
PROMPTS = ["a photo of", "Describe this image in one detailed sentence.", "a",
           "Question: what is in the picture? Answer:"]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> tuple:
    config_cls, load, prompt, stage = BACKENDS[request.param]
    model_dir = request.getfixturevalue(f"tiny_{request.param}")
    return LABELS.get(request.param, request.param), config_cls(enabled=True, model=str(model_dir)), load, prompt, stage


def _batch(photos: list[bytes], captions: list[str]) -> dict[str, np.ndarray]:
    return {col.SAMPLE_ID: np.array([f"{i:09d}" for i in range(len(photos))], dtype=object),
            col.IMAGE: np.array(photos, dtype=object), col.CAPTION: np.array(captions, dtype=object)}


def test_a_batch_yields_exactly_the_requested_number_of_new_tokens_per_image(backend: tuple, photos: list) -> None:
    _, config, load, prompt, _ = backend
    vlm = load(config)
    ids = generate_ids(vlm, decode_images(photos), [prompt(vlm.processor, p) for p in PROMPTS], FORCED)
    assert tuple(ids.shape) == (len(photos), FORCED.max_new_tokens)
    assert not (ids == vlm.processor.tokenizer.pad_token_id).all(dim=1).any()


def test_left_padding_does_not_change_results(backend: tuple, photos: list) -> None:
    _, config, load, prompt, _ = backend
    vlm = load(config)
    assert vlm.processor.tokenizer.padding_side == "left"
    images, prompts = decode_images(photos), [prompt(vlm.processor, p) for p in PROMPTS]
    together = generate_ids(vlm, images, prompts, FORCED)
    alone = [generate_ids(vlm, images[i:i + 1], prompts[i:i + 1], FORCED)[0] for i in range(len(images))]
    for i, ids in enumerate(alone):
        assert together[i].tolist() == ids.tolist(), f"row {i} changed when batched with longer prompts"
    assert len({tuple(r) for r in together.tolist()}) > 1, "outputs should depend on image and prompt"


def test_decoding_is_deterministic(backend: tuple, photos: list) -> None:
    _, config, load, prompt, _ = backend
    vlm = load(config)
    images, prompts = decode_images(photos[:2]), [prompt(vlm.processor, PROMPTS[1])] * 2
    assert generate_ids(vlm, images, prompts, FORCED).tolist() == generate_ids(vlm, images, prompts, FORCED).tolist()


def test_the_stage_writes_one_caption_or_one_status_per_row_and_leaves_the_original(backend: tuple,
                                                                                 photos: list) -> None:
    name, config, _, _, stage_cls = backend
    config = config.model_copy(update={"short_prompt": "Describe this image in a few words."})
    captions = ["alt one", "alt two", "alt three", "alt four", "alt five"]
    batch = _batch(photos + [b"not an image"], captions)
    out = stage_cls(config)(batch)
    assert set(stage_cls.writes) <= set(out)
    assert out[col.CAPTION].tolist() == captions
    assert all(len(out[c]) == len(captions) for c in stage_cls.writes)
    main, short = stage_cls.writes[0], stage_cls.writes[1]
    assert out[main][-1] is None and f"{name}:{CaptionStatus.UNDECODABLE}" in out[col.CAPTION_STATUS][-1]
    for i, status in enumerate(out[col.CAPTION_STATUS][:-1]):
        problems = dict(p.split(":") for p in status.split(";")) if status != CaptionStatus.OK else {}
        for label, column in ((name, main), (f"{name}_short", short)):
            written = out[column][i]
            dropped = label in problems and problems[label] != CaptionStatus.TRUNCATED  # a cut caption is kept, flagged
            assert (written is None) == dropped, (label, written, status)
            assert written is None or written.strip() == written and written


def test_every_photo_gets_a_recaption_of_text(backend: tuple, photos: list) -> None:
    """The tiny models' six tokens on these photos are neither empty nor a loop: a captioner that wrote
    None (or an empty string) for a decodable photo fails here, not only a status check. Random weights
    loop on one token (the tiny Qwen models always do), so no token may repeat, as a caption config can say."""
    name, config, _, _, stage_cls = backend
    config = config.model_copy(update={"generation": GenerationConfig(max_new_tokens=6, no_repeat_ngram_size=1)})
    out = stage_cls(config)(_batch(photos, ["alt"] * len(photos)))
    for status in out[col.CAPTION_STATUS].tolist():  # six tokens may stop before the end token: cut, kept
        assert status in (CaptionStatus.OK, f"{name}:{CaptionStatus.TRUNCATED}"), status
    for caption in out[stage_cls.writes[0]]:
        assert isinstance(caption, str) and caption.strip() and caption != "alt", (name, caption)


def test_a_stage_keeps_the_status_an_earlier_captioner_wrote(tiny_llava: Path, photos: list) -> None:
    batch = _batch(photos[:1], ["alt"])
    batch[col.CAPTION_STATUS] = np.array(["blip2:degenerate"], dtype=object)
    out = LlavaCaptioner(LlavaCaptionerConfig(enabled=True, model=str(tiny_llava), generation=FORCED))(batch)
    assert out[col.CAPTION_STATUS][0].startswith("blip2:degenerate")


def test_cpu_runs_in_float32_unless_told_otherwise() -> None:
    import torch

    from captioning.vlm import pick_device_dtype

    if torch.cuda.is_available():
        pytest.skip("CPU-only behaviour")
    assert pick_device_dtype("auto") == (torch.device("cpu"), torch.float32)
    assert pick_device_dtype("bfloat16")[1] == torch.bfloat16


@pytest.mark.gpu
def test_on_a_gpu_the_stage_loads_in_half_precision_and_keeps_the_forced_length(backend: tuple, photos: list) -> None:
    import torch

    _, config, load, prompt, _ = backend
    vlm = load(config)
    assert vlm.device.type == "cuda" and vlm.dtype in (torch.bfloat16, torch.float16)
    ids = generate_ids(vlm, decode_images(photos), [prompt(vlm.processor, p) for p in PROMPTS], FORCED)
    assert tuple(ids.shape) == (len(photos), FORCED.max_new_tokens)


def test_a_blip2_checkpoint_without_image_tokens_is_refused_at_load(tmp_path: Path) -> None:
    from support.random_models import build_blip2

    model, processor = build_blip2()
    model.config.image_token_index = None  # the layout of checkpoints saved before image placeholder tokens
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="image_token_index"):
        load_blip2(Blip2CaptionerConfig(model=str(tmp_path)))
