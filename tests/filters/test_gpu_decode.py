"""The GPU decode mode: JPEG rows decoded and resized by torchvision on the model's device, others on the CPU.

The same code runs on the CPU device here (torchvision's CPU JPEG decoder stands in for nvJPEG); the
``gpu``-marked tests run it on CUDA. This module imports nothing beyond torch, torchvision and open_clip,
so it also runs where Ray, Polars and the dedup packages are absent (bench/gpu_check.sh).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from filters.clip import ClipScorer
from filters.config import ClipScorerConfig
from manifests import schema as col
from manifests.decode import decode_batch, plan_decode
from manifests.images import DECODED, JPEG, RGB, decode_rgb, rgb_column
from parity import RESIZE_EQUAL, RESIZE_MAX_DIFF, assert_same_embeddings, assert_same_pixels

# A wrong crop moves a tiny CLIP's score of a bundled photo by 1e-2 or more (test_parity.py), the device's
# rounding by 2e-5 on the CPU; CUDA's fp32 (TF32 convolutions) adds some 1e-3.
SCORE_ATOL, CUDA_SCORE_ATOL = 1e-3, 5e-3


def assert_same_clip(actual: dict, reference: dict, score_atol: float = SCORE_ATOL) -> None:
    """Equal CLIP outputs up to the resize's rounding: embeddings by cosine and error (parity.py), scores
    within ``score_atol``, the same rows NaN."""
    a, b = actual[col.CLIP_SCORE], reference[col.CLIP_SCORE]
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, atol=score_atol)
    scored = ~np.isnan(b)
    assert_same_embeddings(actual[col.CLIP_EMBEDDING][scored], reference[col.CLIP_EMBEDDING][scored])


def _clip_in_gpu_mode(staged: dict, config) -> tuple[dict, dict]:
    """CLIP scores of the staged batch through the CPU decode and through the GPU decode mode."""
    stage = ClipScorer(config)
    cpu = decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)]))
    prepared = decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)], device="gpu"))
    assert [len(v) > 0 for v in prepared[JPEG]] == [True] * (len(prepared[JPEG]) - 2) + [False, False]
    return stage(cpu), stage(prepared)


def test_gpu_decode_mode_runs_the_same_code_on_the_cpu_device(staged, tiny_clip):
    cpu, gpu = _clip_in_gpu_mode(staged, tiny_clip.model_copy(update={"device": "cpu"}))
    assert_same_clip(gpu, cpu)
    assert gpu[col.CLIP_SCORE][-2] == pytest.approx(cpu[col.CLIP_SCORE][-2], abs=1e-5)  # the PNG: the CPU path
    assert np.isnan(gpu[col.CLIP_SCORE][-1])


def test_a_gpu_mode_batch_without_jpegs_is_made_on_the_cpu(staged, tiny_clip):
    config = tiny_clip.model_copy(update={"device": "cpu"})
    rows = {k: v[-2:] for k, v in staged.items()}  # the PNG and the row that does not decode
    prepared = decode_batch(rows, plan_decode([ClipScorer.needs(config)], device="gpu"))
    cpu = decode_batch({k: v[-2:] for k, v in staged.items()}, plan_decode([ClipScorer.needs(config)]))
    stage = ClipScorer(config)
    gpu_mode, cpu_mode = stage(prepared)[col.CLIP_SCORE], stage(cpu)[col.CLIP_SCORE]
    assert gpu_mode[0] == pytest.approx(cpu_mode[0], abs=1e-6) and np.isnan(gpu_mode[1])


@pytest.mark.gpu
def test_gpu_decode_mode_on_cuda_matches_the_cpu_decode(staged, tiny_clip):
    cpu, gpu = _clip_in_gpu_mode(staged, tiny_clip.model_copy(update={"device": "cuda", "precision": "fp32"}))
    assert_same_clip(gpu, cpu, CUDA_SCORE_ATOL)  # nvJPEG's IDCT differs from libjpeg's by rounding too
    assert np.isnan(gpu[col.CLIP_SCORE][-1])


@pytest.mark.gpu
def test_nvjpeg_resize_is_close_to_the_pil_crop(staged, tiny_clip):
    from manifests.gpu_images import decode_jpegs

    need = ClipScorer.needs(tiny_clip)[0]
    blobs = list(staged[col.IMAGE][:-2])
    on_gpu = [need.on_device(t).cpu().numpy().astype(int) for t in decode_jpegs(blobs, torch.device("cuda"))]
    on_cpu = [need.from_image(decode_rgb(b)).astype(int) for b in blobs]
    for a, b in zip(on_gpu, on_cpu):
        assert np.abs(a - b).mean() < 3.0


@pytest.mark.gpu
def test_a_corrupt_jpeg_in_a_gpu_batch_loses_only_its_row(staged, tiny_clip):
    from manifests.gpu_images import decode_jpegs

    blobs = list(staged[col.IMAGE][:3])
    blobs[1] = blobs[1][: len(blobs[1]) // 3]
    decoded = decode_jpegs(blobs, torch.device("cuda"))
    assert decoded[0] is not None and decoded[2] is not None


def _resize_mode(rows: dict, config) -> dict:
    return decode_batch(dict(rows), plan_decode([ClipScorer.needs(config)], resize="gpu"))


@pytest.mark.parametrize("which", ["mixed", "one size"])  # an object RGB column / one (N, H, W, 3) array
def test_resize_mode_decodes_on_the_cpu_and_resizes_on_the_device(staged, tiny_clip, which):
    config = tiny_clip.model_copy(update={"device": "cpu"})
    rows = staged
    if which == "one size":  # the staged photos keep their aspect: repeat one that fills the square
        square = next(i for i, b in enumerate(staged[col.IMAGE][:-2]) if decode_rgb(b).size == (256, 256))
        rows = {k: v[[square] * 3] for k, v in staged.items()}
    prepared = _resize_mode(rows, config)
    assert JPEG not in prepared and col.IMAGE not in prepared
    assert (prepared[RGB].dtype == object) == (which == "mixed")
    cpu = decode_batch(dict(rows), plan_decode([ClipScorer.needs(config)]))
    stage = ClipScorer(config)
    resized, reference = stage(prepared), stage(cpu)
    assert_same_clip(resized, reference)  # NaN where both failed
    assert np.isnan(resized[col.CLIP_SCORE]).sum() == (which == "mixed")


def device_resize_agreement(staged_photos: dict, tiny_clip, device: torch.device) -> list[tuple[float, int]]:
    """(fraction of pixels equal to open_clip's PIL resize + crop, largest difference) of the device's
    resize of every bundled photo staged at 256 px: the README's 224 crop, and the tiny CLIP's 64."""
    from manifests.gpu_images import resized_on_device

    images, out = staged_photos[256], []
    for model in (ClipScorerConfig(model="ViT-L-14"), tiny_clip):
        need = ClipScorer.needs(model)[0]
        ok = np.ones(len(images), dtype=bool)
        on_device = resized_on_device(need, rgb_column(images), ok, device).cpu().numpy()
        out.append(assert_same_pixels(on_device, np.stack([need.from_image(img) for img in images])))
    return out


def test_resize_on_the_device_leaves_the_readmes_share_of_pixels_equal(staged_photos, tiny_clip):
    """README: 99.6% of pixels equal to open_clip's PIL resize, the rest within 2 (parity.RESIZE_EQUAL)."""
    (equal, largest), _ = device_resize_agreement(staged_photos, tiny_clip, torch.device("cpu"))
    assert equal >= RESIZE_EQUAL and largest <= RESIZE_MAX_DIFF


@pytest.mark.gpu
def test_resize_on_cuda_leaves_the_readmes_share_of_pixels_equal(staged_photos, tiny_clip):
    """The figure holds on CUDA too: the resize is two float passes rounded between (filters.images), not
    torchvision's one float pass, which leaves only 83% of pixels equal there."""
    (equal, largest), _ = device_resize_agreement(staged_photos, tiny_clip, torch.device("cuda"))
    assert equal >= RESIZE_EQUAL and largest <= RESIZE_MAX_DIFF


@pytest.mark.gpu
def test_resize_mode_on_cuda_matches_the_cpu_decode(staged, tiny_clip):
    config = tiny_clip.model_copy(update={"device": "cuda", "precision": "fp32"})
    stage = ClipScorer(config)
    resized = stage(_resize_mode(staged, config))
    reference = stage(decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)])))
    assert_same_clip(resized, reference, CUDA_SCORE_ATOL)


def test_gpu_mode_with_a_cpu_need_decodes_each_image_once(staged, tiny_clip, tmp_path, monkeypatch):
    """A hash or OCR need makes the CPU decode every row: the device then gets the decoded pixels to resize,
    not the JPEG to decode again."""
    from manifests.images import DECODE_LOG_ENV, RgbArray

    config = tiny_clip.model_copy(update={"device": "cpu"})
    monkeypatch.setenv(DECODE_LOG_ENV, str(tmp_path))
    prepared = decode_batch(dict(staged), plan_decode([ClipScorer.needs(config), (RgbArray(),)], device="gpu"))
    scored = ClipScorer(config)(prepared)
    assert JPEG not in prepared and RGB in prepared
    decodes = [line for f in tmp_path.glob("*.log") for line in f.read_text().split()]
    assert len(decodes) == len(staged[col.IMAGE]) and len(set(decodes)) == len(decodes)
    reference = ClipScorer(config)(decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)])))
    assert_same_clip(scored, reference)
