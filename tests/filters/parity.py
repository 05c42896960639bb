"""The comparisons of the preprocessing parity tests, strict enough that a wrong crop fails them.

Tiny random CLIP scores span a few hundredths, so a score tolerance of 2e-2 passes an image that was
stretched, flipped, rotated or cropped to a quarter. These compare what the scores are made of: the
pixels (the fraction of equal uint8 values, the largest difference) and the image embeddings (each row's
cosine with its reference, the largest component error). ``test_parity.py`` feeds each wrong
preprocessing through them and expects them to fail. Imports numpy, PIL and torch only (bench/gpu_check.sh).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

# README, "Feeding the GPUs": the device's resize + crop leaves 99.6% of pixels equal to open_clip's PIL
# resize (256 px staged JPEGs of the bundled photos, 224 crop), none off by more than two.
RESIZE_EQUAL, RESIZE_MAX_DIFF = 0.995, 2
# Rounding of the resize moves a tiny CLIP's embedding by 1e-7 in cosine, fp16 storage by 1e-6; a wrong
# crop of a bundled photo by 1e-2 or more.
EMBEDDING_COSINE, EMBEDDING_ERROR = 0.999, 0.01
WRONG = ("stretch", "off-centre crop", "quarter crop", "flip", "rotation by 90")


def pixel_agreement(actual: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    """(fraction of equal values, largest absolute difference) of two uint8 arrays of one shape."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    return float((diff == 0).mean()), int(diff.max(initial=0))


def assert_same_pixels(actual: np.ndarray, expected: np.ndarray, min_equal: float = RESIZE_EQUAL,
                       max_diff: int = RESIZE_MAX_DIFF) -> tuple[float, int]:
    """Raise unless ``min_equal`` of the values are equal and none differs by more than ``max_diff``."""
    equal, largest = pixel_agreement(actual, expected)
    assert equal >= min_equal and largest <= max_diff, f"{equal:.4%} of pixels equal, max difference {largest}"
    return equal, largest


def row_cosines(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    a, b = (np.asarray(x, dtype=np.float64) for x in (actual, expected))
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def assert_same_embeddings(actual: np.ndarray, expected: np.ndarray, min_cosine: float = EMBEDDING_COSINE,
                           max_error: float = EMBEDDING_ERROR) -> tuple[float, float]:
    """Raise unless every row's cosine with its reference is at least ``min_cosine`` and no component is
    off by more than ``max_error``; returns (largest cosine deviation, largest error)."""
    assert actual.shape == expected.shape and len(actual), (actual.shape, expected.shape)
    deviation = float(1 - row_cosines(actual, expected).min())
    error = float(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64)).max())
    assert deviation <= 1 - min_cosine and error <= max_error, f"cosine down to {1 - deviation:.6f}, error {error:.4f}"
    return deviation, error


def wrong_preprocessings(size: int, crop: Callable[[Image.Image], np.ndarray]) -> dict[str, Callable]:
    """Wrong ways to make a ``size`` square from an image, beside ``crop``, the right one: each a function
    of the PIL image to a (size, size, 3) uint8 array."""

    def off_centre(img: Image.Image) -> np.ndarray:  # the short side resized right, the crop at the corner
        scale = size / min(img.size)
        resized = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                             Image.BICUBIC)
        return np.asarray(resized)[:size, :size]

    def quarter(img: Image.Image) -> np.ndarray:
        return crop(img.crop((0, 0, img.width // 2, img.height // 2)))

    made = {
        "stretch": lambda img: np.asarray(img.resize((size, size), Image.BICUBIC)),  # no centre crop
        "off-centre crop": off_centre,
        "quarter crop": quarter,
        "flip": lambda img: np.ascontiguousarray(crop(img)[:, ::-1]),
        "rotation by 90": lambda img: np.ascontiguousarray(np.rot90(crop(img))),
    }
    assert tuple(made) == WRONG
    return made
