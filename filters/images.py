"""Staged image bytes -> PIL images for the pixel models, and the NaN marking of rows they could not score."""

from __future__ import annotations

import numpy as np
from PIL import Image

from manifests.images import decode_rgb


def decode_batch(values: np.ndarray) -> tuple[list[Image.Image], np.ndarray]:
    """Decoded images of the rows that decode, and a boolean mask of those rows."""
    images = [decode_rgb(v) for v in values]
    ok = np.array([img is not None for img in images], dtype=bool)
    return [img for img in images if img is not None], ok


def scatter(values: np.ndarray, ok: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Put per-decoded-row ``values`` back at their rows; the others get ``fill`` (NaN: not scored)."""
    out = np.full((len(ok), *values.shape[1:]), fill, dtype=values.dtype)
    out[ok] = values
    return out
