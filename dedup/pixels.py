"""Exact duplicates by decoded pixels: the sha256 of an image's RGB pixels at a canonical size."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from dedup.config import ExactConfig
from manifests import schema as col
from manifests.images import DECODED, ResizedArray, ensure


def pixel_hash(img: Image.Image, size: int) -> str:
    """Two images with the same pixels (a lossless re-encode, another container) hash the same."""
    return hashlib.sha256(need(size).from_image(img).tobytes()).hexdigest()


def need(size: int) -> ResizedArray:
    """The content region (not the padding ingest added) box-resized to ``size`` squared."""
    return ResizedArray(size, size, int(Image.Resampling.BOX), content=True)


class PixelHasher:
    """Score stage: reads ``ResizedArray`` (the content region box-resized to ``canonical_size`` squared; the
    decode stage makes it from ``image`` and ``content_box``), writes ``pixel_hash`` (hex sha256 of those RGB bytes); null when the
    image does not decode."""

    reads = ()
    writes = (col.PIXEL_HASH,)

    @staticmethod
    def needs(config: ExactConfig) -> tuple[ResizedArray]:
        return (need(config.canonical_size),)

    def __init__(self, config: ExactConfig) -> None:
        self.size = config.canonical_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = need(self.size)
        batch = ensure(batch, (wanted,))
        out = np.empty(len(batch[DECODED]), dtype=object)
        for i, (ok, canonical) in enumerate(zip(batch[DECODED], batch[wanted.column])):
            out[i] = hashlib.sha256(np.ascontiguousarray(canonical).tobytes()).hexdigest() if ok else None
        batch[col.PIXEL_HASH] = out
        return batch
