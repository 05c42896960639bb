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
from manifests.images import DECODED, JPEG, RGB, decode_rgb


def _clip_in_gpu_mode(staged: dict, config) -> tuple[dict, dict]:
    """CLIP scores of the staged batch through the CPU decode and through the GPU decode mode."""
    stage = ClipScorer(config)
    cpu = decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)]))
    prepared = decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)], device="gpu"))
    assert [len(v) > 0 for v in prepared[JPEG]] == [True] * (len(prepared[JPEG]) - 2) + [False, False]
    return stage(cpu), stage(prepared)


def test_gpu_decode_mode_runs_the_same_code_on_the_cpu_device(staged, tiny_clip):
    cpu, gpu = _clip_in_gpu_mode(staged, tiny_clip.model_copy(update={"device": "cpu"}))
    np.testing.assert_allclose(gpu[col.CLIP_SCORE][:-1], cpu[col.CLIP_SCORE][:-1], atol=2e-2)
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
    np.testing.assert_allclose(gpu[col.CLIP_SCORE][:-1], cpu[col.CLIP_SCORE][:-1], atol=2e-2)
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
    resized, reference = stage(prepared)[col.CLIP_SCORE], stage(cpu)[col.CLIP_SCORE]
    np.testing.assert_allclose(resized, reference, atol=2e-2)  # NaN where both failed
    assert np.isnan(resized).sum() == (which == "mixed")


def test_resize_on_the_device_is_within_rounding_of_open_clips_pil_resize(staged, tiny_clip):
    from manifests.gpu_images import resized_on_device

    for model in (tiny_clip, ClipScorerConfig(model="ViT-L-14")):  # 64 px and 224 px crops of 256 px images
        need = ClipScorer.needs(model)[0]
        prepared = _resize_mode(staged, model)
        on_device = resized_on_device(need, prepared[RGB], prepared[DECODED], torch.device("cpu")).numpy()
        on_cpu = np.stack([need.from_image(decode_rgb(b)) for b in staged[col.IMAGE][:-1]])
        diff = np.abs(on_device.astype(int) - on_cpu.astype(int))
        assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 2, (model.model, diff.mean(), diff.max())


@pytest.mark.gpu
def test_resize_mode_on_cuda_matches_the_cpu_decode(staged, tiny_clip):
    config = tiny_clip.model_copy(update={"device": "cuda", "precision": "fp32"})
    stage = ClipScorer(config)
    resized = stage(_resize_mode(staged, config))[col.CLIP_SCORE]
    reference = stage(decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)])))[col.CLIP_SCORE]
    np.testing.assert_allclose(resized, reference, atol=2e-2)


def test_gpu_mode_with_a_cpu_need_decodes_each_image_once(staged, tiny_clip, tmp_path, monkeypatch):
    """A hash or OCR need makes the CPU decode every row: the device then gets the decoded pixels to resize,
    not the JPEG to decode again."""
    from manifests.images import DECODE_LOG_ENV, RgbArray

    config = tiny_clip.model_copy(update={"device": "cpu"})
    monkeypatch.setenv(DECODE_LOG_ENV, str(tmp_path))
    prepared = decode_batch(dict(staged), plan_decode([ClipScorer.needs(config), (RgbArray(),)], device="gpu"))
    scores = ClipScorer(config)(prepared)[col.CLIP_SCORE]
    assert JPEG not in prepared and RGB in prepared
    decodes = [line for f in tmp_path.glob("*.log") for line in f.read_text().split()]
    assert len(decodes) == len(staged[col.IMAGE]) and len(set(decodes)) == len(decodes)
    reference = ClipScorer(config)(decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)])))
    np.testing.assert_allclose(scores, reference[col.CLIP_SCORE], atol=2e-2)
