"""The parity comparisons of tests/filters/parity.py: the device's resize passes them, and each wrong
preprocessing (a stretch, an off-centre or quarter crop, a flip, a rotation) fails them, on the pixels and
on the tiny CLIPs' embeddings that test_gpu_decode.py and the score phase test compare."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from filters.clip import ClipScorer, load, score
from filters.config import ClipScorerConfig
from manifests.gpu_images import resized_on_device
from manifests.images import rgb_column
from parity import WRONG, assert_same_embeddings, assert_same_pixels, wrong_preprocessings


def device_crops(need, images: list[Image.Image]) -> np.ndarray:
    """The crops ``decode.resize: gpu`` makes, on the CPU device."""
    ok = np.ones(len(images), dtype=bool)
    return resized_on_device(need, rgb_column(images), ok, torch.device("cpu")).numpy()


def pil_crops(need, images: list[Image.Image]) -> np.ndarray:
    """open_clip's own resize and centre crop (PIL), the reference."""
    return np.stack([need.from_image(img) for img in images])


def wrong_crops(need, images: list[Image.Image], wrong: str) -> np.ndarray:
    made = wrong_preprocessings(need.size[0], need.from_image)[wrong]
    return np.stack([made(img) for img in images])


@pytest.mark.parametrize("wrong", WRONG)
def test_a_wrong_preprocessing_fails_the_pixel_comparison(staged_photos, wrong):
    need = ClipScorer.needs(ClipScorerConfig(model="ViT-L-14"))[0]  # the README's 224 crop of 256 px JPEGs
    images = staged_photos[256]
    reference = pil_crops(need, images)
    assert_same_pixels(device_crops(need, images), reference)
    with pytest.raises(AssertionError, match="pixels equal"):
        assert_same_pixels(wrong_crops(need, images, wrong), reference)


@pytest.fixture(scope="module")
def embedders(tiny_clip, tiny_clip_768) -> list[tuple[object, object, int]]:
    """(model, pixel need, staged side): test_gpu_decode's tiny CLIP on 256 px photos and the score phase
    test's 768-wide one on 128 px photos."""
    out = []
    for config, side in ((tiny_clip, 256), (tiny_clip_768, 128)):
        config = config.model_copy(update={"device": "cpu", "precision": "fp32"})
        out.append((load(config), ClipScorer.needs(config)[0], side))
    return out


def embeddings(model, pixels: np.ndarray) -> np.ndarray:
    return score(model, pixels, model.tokenizer([""] * len(pixels)).numpy())[1]


@pytest.mark.parametrize("wrong", WRONG)
def test_a_wrong_preprocessing_fails_the_embedding_comparison(staged_photos, embedders, wrong):
    for model, need, side in embedders:
        images = staged_photos[side]
        reference = embeddings(model, pil_crops(need, images))
        assert_same_embeddings(embeddings(model, device_crops(need, images)), reference)
        with pytest.raises(AssertionError, match="cosine down to"):
            assert_same_embeddings(embeddings(model, wrong_crops(need, images, wrong)), reference)
