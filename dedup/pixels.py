"""Exact duplicates by decoded pixels: the sha256 of an image's RGB pixels at a canonical size."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from dedup.config import ExactConfig
from manifests import schema as col
from dedup.content import content_images


def pixel_hash(img: Image.Image, size: int) -> str:
    """Two images with the same pixels (a lossless re-encode, another container) hash the same."""
    canonical = img.resize((size, size), Image.Resampling.BOX)
    return hashlib.sha256(canonical.tobytes()).hexdigest()


class PixelHasher:
    """Score stage: reads ``image``, writes ``pixel_hash`` (hex sha256); null when the image does not decode."""

    reads = (col.IMAGE,)
    writes = (col.PIXEL_HASH,)

    def __init__(self, config: ExactConfig) -> None:
        self.size = config.canonical_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = np.empty(len(batch[col.IMAGE]), dtype=object)
        for i, img in enumerate(content_images(batch)):  # the picture, not the padding ingest added
            out[i] = pixel_hash(img, self.size) if img is not None else None
        batch[col.PIXEL_HASH] = out
        return batch
