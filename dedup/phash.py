"""Perceptual hash (DCT pHash via imagehash): the offline image near-duplicate descriptor."""

from __future__ import annotations

import imagehash
import numpy as np
import polars as pl
from PIL import Image, ImageOps

from dedup.config import PHashConfig
from manifests.images import DECODED, RgbArray, ensure
from manifests import schema as col


def phash_string(img: Image.Image, hash_size: int, mirror: bool) -> str:
    """Hex pHash; with ``mirror``, then ':' and the hex pHash of the left-right mirrored image."""
    code = str(imagehash.phash(img, hash_size=hash_size))
    return f"{code}:{imagehash.phash(ImageOps.mirror(img), hash_size=hash_size)}" if mirror else code


def split_codes(values: pl.Series) -> tuple[pl.Series, pl.Series | None]:
    """The ``phash`` column -> (codes, mirrored codes or None when the column has none)."""
    parts = values.str.split_exact(":", 1)
    mirrored = parts.struct.field("field_1")
    return parts.struct.field("field_0"), (None if mirrored.null_count() == len(values) else mirrored)


class PerceptualHasher:
    """Score stage: reads ``RgbArray`` (the decoded image at its staged size; the decode stage makes it from
    ``image``), writes ``phash``: hex pHash (64 or 256 bits), with ``mirror`` followed by ':' and the pHash
    of the mirrored image (a flip is a common re-upload edit that pHash alone misses).
    Null when the image does not decode."""

    reads = ()
    writes = (col.PHASH,)

    @staticmethod
    def needs(config: PHashConfig) -> tuple[RgbArray]:
        return (RgbArray(),)

    def __init__(self, config: PHashConfig) -> None:
        self.hash_size, self.mirror = int(round(config.bits ** 0.5)), config.mirror

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = ensure(batch, (RgbArray(),))
        out = np.empty(len(batch[DECODED]), dtype=object)
        for i, (ok, rgb) in enumerate(zip(batch[DECODED], batch[RgbArray().column])):
            out[i] = phash_string(Image.fromarray(rgb), self.hash_size, self.mirror) if ok else None
        batch[col.PHASH] = out
        return batch
