"""PDQ (Meta's 256-bit perceptual hash, via ``pdqhash``) of several regions per image, with its quality.

Pure functions of an RGB uint8 array (the content region, see ``dedup.content``): ``region_codes``
gives the codes the dedup phase indexes (the full region in its 8 dihedral variants, then one centre
crop per ``regions`` fraction) and each region's PDQ quality. The hex form is PDQ's: bit i of the
hash vector is the i-th bit, most significant first (ThreatExchange's ``pdq`` strings).

PDQ hashes luminance only, so one design in two colours (a red and a blue mark on white, a word in
two colours) hashes alike. ``colour_signature`` is the content region's hue distribution, and a PDQ
pair counts only between ``compatible`` signatures: either image nearly achromatic (a greyscale copy
is a copy), or their hue histograms overlapping by at least ``min_colour_overlap``.
"""

from __future__ import annotations

import numpy as np
import pdqhash
from PIL import Image

from dedup.artefacts import binary_matrix
from dedup.config import PdqConfig
from dedup.content import centre_crop
from dedup.layout import lab
from dedup.verify import orb_features
from manifests import schema as col
from manifests.images import CONTENT_RGB, DECODED, RgbArray, ensure


CODE_BYTES = 32
HUE_BINS = 24  # 15 degrees of CIELAB hue each: 12 bins let a two-colour design's recolour overlap it by 0.4
COLOUR_BYTES = 2 * HUE_BINS  # the ``pdq_colour`` column: float16 little-endian
COLOUR_SIDE = 64  # on a 32 x 32 thumbnail thin coloured lines average out to grey


def pdq(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """(32-byte code, quality 0-100) of one RGB uint8 array: ``pdqhash.compute`` packed MSB first."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb, dtype=np.uint8))
    return np.packbits(bits.astype(np.uint8)), int(quality)


def pdq_dihedral(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """(8 x 32-byte codes, quality): the image and its mirror, each at 0, 90, 180 and 270 degrees.

    ``pdqhash.compute_dihedral`` derives the variants from one DCT; its mirror lands 20-30 bits from
    the hash of an actual mirrored copy (JPEG included), too close to the match distance 31 to find
    flips reliably. The image and its mirror are hashed directly, and each one's rotations derived.
    """
    codes, quality = [], 0
    for k, array in enumerate((rgb, rgb[:, ::-1])):
        vectors, q = pdqhash.compute_dihedral(np.ascontiguousarray(array, dtype=np.uint8))
        codes += vectors[:4]  # as is, rot90, rot180, rot270
        quality = q if k == 0 else quality
    return np.packbits(np.stack(codes).astype(np.uint8), axis=1), int(quality)


def stretched(rgb: np.ndarray, config: PdqConfig) -> np.ndarray:
    """The content region with its luminance stretched so its ``stretch_percentile`` and 100 minus it span
    0-255, by one gain and offset on every channel (so colours keep their order).

    PDQ's hash thresholds DCT coefficients at their median, so it barely moves under such a map; its
    quality (gradient energy) scales with contrast, so a contrast x0.5 copy of a photo falls under
    ``min_quality`` and loses its pairs. Hashing the stretched region makes the quality, and the guard,
    contrast-invariant. An image whose spread is under ``stretch_min_spread`` grey levels (a flat colour, a soft
    gradient, a near-blank page) is returned as is, and the gain is capped at ``stretch_max_gain``, so JPEG noise
    is never amplified into structure. ``stretch_max_gain`` 1 turns it off."""
    if config.stretch_max_gain <= 1 or rgb.size == 0:
        return rgb
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 65_536)))  # percentiles of ~64k pixels suffice
    sample = rgb[::step, ::step].reshape(-1, 3)
    luma = (sample @ np.array([77, 150, 29], np.uint32)) >> 8  # ITU-R BT.601 weights in 8-bit fixed point
    cumulative = np.cumsum(np.bincount(luma, minlength=256)) / len(luma)
    lo = int(np.searchsorted(cumulative, config.stretch_percentile / 100))
    hi = int(np.searchsorted(cumulative, 1 - config.stretch_percentile / 100))
    spread = hi - lo  # grey levels between the two percentiles, as a flat image's noise would span them
    if spread < config.stretch_min_spread:
        return rgb
    gain = min(config.stretch_max_gain, 256.0 / (spread + 1))
    if gain <= 1.0:
        return rgb
    centre = (lo + hi + 1) / 2
    table = np.clip(np.rint((np.arange(256) - centre) * gain + 128), 0, 255).astype(np.uint8)
    return table[rgb]  # one gain and offset on every channel, as a lookup table


def colour_signature(rgb: np.ndarray, min_chroma: float) -> np.ndarray:
    """(HUE_BINS,) float16: the content region's chroma by CIELAB hue. On a 64 x 64 box-filtered thumbnail, each
    pixel of chroma C* >= ``min_chroma`` adds its C* to its two nearest of ``HUE_BINS`` hue bins (split linearly),
    divided by the pixel count: the bins sum to the mean chroma (0 for a grey image), and a banner or a wider
    crop adds mass without taking any away. Taken on the unstretched region: the luminance stretch moves chroma."""
    if rgb.size == 0:
        return np.zeros(HUE_BINS, np.float16)
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).resize(
        (COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BOX))
    values = lab(small).reshape(-1, 3)
    chroma = np.hypot(values[:, 1], values[:, 2])
    weight = np.where(chroma >= min_chroma, chroma, 0.0) / len(values)
    position = np.arctan2(values[:, 2], values[:, 1]) / (2 * np.pi) % 1.0 * HUE_BINS
    low = np.floor(position)
    part = position - low
    low = low.astype(np.int64) % HUE_BINS
    hist = (np.bincount(low, weight * (1 - part), HUE_BINS)
            + np.bincount((low + 1) % HUE_BINS, weight * part, HUE_BINS))
    return hist.astype(np.float16)


def colour_signatures(values) -> np.ndarray:
    """A ``pdq_colour`` binary column (pyarrow) -> (n, HUE_BINS) float16 signatures."""
    return binary_matrix(values, np.dtype("<f2"), HUE_BINS)


def colour_overlap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(overlap, chroma) of signature pairs (rows of two (n, HUE_BINS) arrays): the share of the less colourful
    image's chroma that the other has at the same hues (0-1; 1 when one holds the other's colours), and that
    image's mean chroma."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    chroma = np.minimum(a.sum(1), b.sum(1))
    return np.minimum(a, b).sum(1) / np.maximum(chroma, 1e-9), chroma


def compatible(a: np.ndarray, b: np.ndarray, config: PdqConfig) -> np.ndarray:
    """Which signature pairs may be a PDQ pair: either image has a mean chroma under ``achromatic_chroma`` (a
    greyscale copy is a copy; a zero signature, scored before the gate, is compatible with every image), or
    their colours overlap by at least ``min_colour_overlap``."""
    overlap, chroma = colour_overlap(a, b)
    return (chroma < config.achromatic_chroma) | (overlap >= config.min_colour_overlap - 1e-6)


def to_hex(code: np.ndarray) -> str:
    return code.tobytes().hex()


def variants(config: PdqConfig) -> int:
    """Codes of the full region in ``pdq_codes``: 8 with ``dihedral``, else 1."""
    return 8 if config.dihedral else 1


def row_width(config: PdqConfig) -> int:
    """Bytes of one ``pdq_codes`` row: a quality byte per crop region, then every code."""
    return len(config.regions) + CODE_BYTES * (variants(config) + len(config.regions))


def region_codes(rgb: np.ndarray, config: PdqConfig) -> tuple[np.ndarray, int, tuple[np.ndarray, np.ndarray]]:
    """(full-region codes (V, 32), full quality, (crop codes (R, 32), crop qualities (R,))) of one image."""
    if config.dihedral:
        full, quality = pdq_dihedral(rgb)
    else:
        code, quality = pdq(rgb)
        full = code[None]
    crops = [pdq(centre_crop(rgb, f)) for f in config.regions]
    crop_codes = np.stack([c for c, _ in crops]) if crops else np.empty((0, CODE_BYTES), np.uint8)
    return full, quality, (crop_codes, np.array([q for _, q in crops], dtype=np.uint8))


def pack_row(full: np.ndarray, crop_codes: np.ndarray, crop_quality: np.ndarray) -> bytes:
    """One ``pdq_codes`` value: crop qualities (1 byte each), full-region codes, crop codes."""
    return crop_quality.astype(np.uint8).tobytes() + full.astype(np.uint8).tobytes() + crop_codes.tobytes()


def unpack_rows(rows: np.ndarray, full_quality: np.ndarray, config: PdqConfig) -> tuple[np.ndarray, np.ndarray]:
    """(n, row_width) uint8 rows + full-region qualities -> codes (n, V + R, 32) and per-code quality (n, V + R)."""
    r, v = len(config.regions), variants(config)
    codes = rows[:, r:].reshape(len(rows), v + r, CODE_BYTES)
    quality = np.concatenate([np.repeat(full_quality[:, None], v, axis=1), rows[:, :r]], axis=1)
    return codes, quality


class PdqHasher:
    """Score stage: reads ``RgbArray`` of the content region (the decode stage makes it from ``image`` and
    ``content_box``), writes ``pdq_hash`` (hex PDQ of the content region), ``pdq_quality`` (0-100), the
    ``pdq_codes`` artefact (every indexed region's code and quality), the ``pdq_colour`` artefact (the
    ``colour_signature`` the colour gate compares) and, with ``verify.enabled``, ``orb_features`` for
    geometric verification (else null). An image that does not decode gets nulls."""

    reads = ()
    writes = (col.PDQ_HASH, col.PDQ_QUALITY, col.PDQ_CODES, col.PDQ_COLOUR, col.ORB_FEATURES)

    @staticmethod
    def needs(config: PdqConfig) -> tuple[RgbArray]:
        return (CONTENT_RGB,)

    def __init__(self, config: PdqConfig) -> None:
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = ensure(batch, (CONTENT_RGB,))
        n = len(batch[DECODED])
        out = {c: np.full(n, None, dtype=object) for c in self.writes}
        for i, (ok, rgb) in enumerate(zip(batch[DECODED], batch[CONTENT_RGB.column])):
            if not ok:
                continue
            full, quality, (crop_codes, crop_quality) = region_codes(stretched(rgb, self.config), self.config)
            out[col.PDQ_HASH][i], out[col.PDQ_QUALITY][i] = to_hex(full[0]), quality
            out[col.PDQ_CODES][i] = pack_row(full, crop_codes, crop_quality)
            out[col.PDQ_COLOUR][i] = colour_signature(rgb, self.config.colour_min_chroma).astype("<f2").tobytes()
            if self.config.verify.enabled:
                out[col.ORB_FEATURES][i] = orb_features(rgb, self.config.verify.features)
        batch.update(out)
        return batch
