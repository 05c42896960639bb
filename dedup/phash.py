"""Perceptual hash (DCT pHash via imagehash): the offline image near-duplicate descriptor."""

from __future__ import annotations

import imagehash
import numpy as np
import polars as pl
from PIL import Image

from dedup.config import PHashConfig
from manifests import schema as col
from manifests.images import CONTENT_RGB, DECODED, RgbArray, ensure



def phash_string(img: Image.Image, hash_size: int, mirror: bool) -> str:
    """Hex pHash (``imagehash.phash``'s algorithm: grey, Lanczos to 4x the hash side, 2-D DCT-II, the low
    frequencies against their median); with ``mirror``, then ':' and the hex pHash of the left-right mirrored
    image, from the same DCT: mirroring flips the sign of the odd horizontal frequencies (and the resize
    commutes with the mirror), so the mirrored image needs no second resize and transform. Equal to
    ``imagehash.phash`` of the image and of ``ImageOps.mirror(img)`` (tested)."""
    import scipy.fftpack  # as imagehash does: the dedup readers import this module without hashing

    size = hash_size * 4
    pixels = np.asarray(img.convert("L").resize((size, size), Image.Resampling.LANCZOS))
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:hash_size, :hash_size]
    code = str(imagehash.ImageHash(low > np.median(low)))
    if not mirror:
        return code
    mirrored = low * np.where(np.arange(hash_size) % 2, -1.0, 1.0)
    return f"{code}:{imagehash.ImageHash(mirrored > np.median(mirrored))}"


def gradient_quality(img: Image.Image) -> int:
    """PDQ's quality measure, 0-100, on a 64x64 grey version: the sum of neighbour differences (in
    percent of full scale) over 90. Flat colours score 0, smooth gradients under 50, photos 100: what
    is smooth hashes by accident of rounding, so two distinct smooth images share a pHash."""
    grey = np.asarray(img.convert("L").resize((64, 64), Image.Resampling.BOX), dtype=np.int64)
    steps = np.abs(np.diff(grey, axis=0)) * 100 // 255
    steps_x = np.abs(np.diff(grey, axis=1)) * 100 // 255
    return int(min(100, (steps.sum() + steps_x.sum()) // 90))


def split_codes(values: pl.Series) -> tuple[pl.Series, pl.Series | None]:
    """The ``phash`` column -> (codes, mirrored codes or None when the column has none)."""
    parts = values.str.split_exact(":", 1)
    mirrored = parts.struct.field("field_1")
    return parts.struct.field("field_0"), (None if mirrored.null_count() == len(values) else mirrored)


class PerceptualHasher:
    """Score stage: reads ``RgbArray`` of the content region (the decode stage makes it from ``image`` and
    ``content_box``), writes ``phash``: hex pHash (64 or 256 bits), with ``mirror`` followed by ':' and the
    pHash of the mirrored image (a flip is a common re-upload edit that pHash alone misses).
    Null when the image does not decode or its ``gradient_quality`` is below ``min_quality`` (too little
    structure to match on)."""

    reads = ()
    writes = (col.PHASH,)

    @staticmethod
    def needs(config: PHashConfig) -> tuple[RgbArray]:
        return (CONTENT_RGB,)

    def __init__(self, config: PHashConfig) -> None:
        self.hash_size, self.mirror = int(round(config.bits ** 0.5)), config.mirror
        self.min_quality = config.min_quality

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = ensure(batch, (CONTENT_RGB,))
        out = np.empty(len(batch[DECODED]), dtype=object)
        for i, (ok, rgb) in enumerate(zip(batch[DECODED], batch[CONTENT_RGB.column])):
            img = Image.fromarray(rgb) if ok else None
            usable = img is not None and (self.min_quality == 0 or gradient_quality(img) >= self.min_quality)
            out[i] = phash_string(img, self.hash_size, self.mirror) if usable else None
        batch[col.PHASH] = out
        return batch
