"""Colour layout: the descriptor of the images PDQ cannot hash (flat designs, soft gradients, pastels).

PDQ refuses an image whose quality (gradient energy) is under ``dedup.pdq.min_quality``: its hash is
noise. Such an image still has a colour layout, and a copy keeps it. ``layout`` is a pure function of the
RGB uint8 content region: a 16 x 16 CIELAB thumbnail (PIL's box filter, sRGB D65), averaged with its own
mirror so a left-right flip gives the same descriptor, of which the left half (16 rows x 8 columns x Lab)
is stored as 384 bytes (L x 2.55, a + 128, b + 128, rounded).

Two layouts match (``match``) in a window of rows, the whole image or the image without its top or bottom
quarter (a banner over up to a quarter of the height), when in that window both

- the root-mean-square colour difference of the cells, in CIELAB Delta E, is at most ``max_delta_e``
  (``dedup.layout.threshold`` is 1 - Delta E / 100): the
  colours agree, so distinct flat colours, gradients of other colours and recolours of one design differ; and
- that difference is at most ``max_relative`` of the two images' own variation in the window (root-mean-square
  Delta E of each cell from the window's mean colour, summed, plus 1): the layout agrees, so two pictures on one
  background colour, which differ in a few cells only, are refused. A near-flat image has almost no variation,
  so it matches only a copy of itself within ``max_relative`` Delta E.

Those colours move under a brightness, contrast or gamma edit (Delta E 10-15 for brightness x1.3) and vanish
in a greyscale copy, so two layouts also match photometrically (``tone_match``, ``dedup.layout.tone``) in the
middle half of the rows (outside a banner), when

- their grey lightness (``grey_level``: the CIELAB L of a greyscale copy) has the same shape: its deviations from
  the mean correlate (a monotone edit keeps that), and the shape is more than noise (a spread of at least
  ``min_spread``); and
- two colour layouts have the same hues: the (a, b) layouts, whole and less their means, point the same way
  (a common scale of the chroma keeps that, a recolour turns it); a greyscale layout and a colour one instead
  have the same grey lightness, level and all. Two greyscale layouts are the raw match's.

Two colour layouts flat in grey lightness whose colour changes (a mark as light as its background) are compared
by their hues alone; a layout flat in both is left to the raw match: its normalised shape would be noise. A
photometric match at its limits counts as Delta E ``max_delta_e``. On the tuning split (bench/neardup_eval.py
--fast, pdq_regions) it lifts the recall of contrast copies 0.62 -> 0.97, brightness 0.60 -> 0.78, greyscale
0.67 -> 0.93 with no false pair; the reporting split's figures are in ``ToneConfig``'s notes.

The search (``search_vectors``) indexes the middle half of the rows, which every window holds, mapped onto
the unit sphere (``ROOF``) so that FAISS's inner-product search finds every pair whose middle rows are within
a Euclidean distance: a superset of the matches, which ``match`` then checks on the stored layouts. The
photometric search (``tone_vectors``) indexes the lightness shape beside the hues of every layout with a shape,
bounded the same way (``tone_cosine``); a layout is searched in both and its candidates are checked by both.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from dedup.config import LayoutConfig, ToneConfig
from manifests import schema as col
from manifests.images import CONTENT_RGB, DECODED, RgbArray, ensure

GRID = 16  # rows and columns of the thumbnail
HALF = GRID // 2  # columns stored: the thumbnail is its own mirror
LAYOUT_BYTES = GRID * HALF * 3
WINDOWS = ((0, GRID), (0, GRID - GRID // 4), (GRID // 4, GRID))  # whole; no bottom quarter; no top quarter
MIDDLE = (GRID // 4, GRID - GRID // 4)  # rows every window holds: what the search indexes
ROOF = 5000.0  # the search vector is (middle rows, ROOF) normalised; see ``candidate_cosine``
TONE_L = 0.8  # the share of the L shape in a photometric search vector (the rest: the hue); see ``tone_cosine``
_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]], np.float64)
_WHITE = np.array([0.95047, 1.0, 1.08883])


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB uint8 pixels, float64 (..., 3)."""
    c = rgb.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def layout(rgb: np.ndarray) -> np.ndarray:
    """(GRID, HALF, 3) uint8: the mirror-averaged CIELAB thumbnail's left half, quantised (see the module)."""
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).resize((GRID, GRID),
                                                                                       Image.Resampling.BOX))
    values = lab(small)
    values = (values + values[:, ::-1]) / 2
    quantised = values[:, :HALF] * (2.55, 1.0, 1.0) + (0.0, 128.0, 128.0)
    return np.clip(np.rint(quantised), 0, 255).astype(np.uint8)


def unpack(rows: np.ndarray) -> np.ndarray:
    """(n, LAYOUT_BYTES) uint8 -> CIELAB (n, GRID, HALF, 3) float32."""
    values = rows.reshape(len(rows), GRID, HALF, 3).astype(np.float32)
    return (values - np.float32([0, 128, 128])) / np.float32([2.55, 1, 1])


def variation(values: np.ndarray) -> np.ndarray:
    """(n, windows): each layout's own colour variation in each window, the root-mean-square Delta E of its cells
    from the window's mean colour (a property of one layout: ``layout_matches`` computes it once per row)."""
    out = []
    for top, bottom in WINDOWS:
        v = values[:, top:bottom]
        out.append(np.sqrt((((v - v.mean((1, 2), keepdims=True)) ** 2).sum(-1)).sum((1, 2)) / ((bottom - top) * HALF)))
    return np.stack(out, axis=1)


def distances(x: np.ndarray, y: np.ndarray, own_x: np.ndarray, own_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Delta E, relative) of layouts x[i] and y[i] (float, (n, GRID, HALF, 3)), whose ``variation`` is own_x[i]
    and own_y[i], in each window: (n, windows)."""
    delta = np.sqrt(((x - y) ** 2).sum(-1))  # (n, GRID, HALF) per-cell Delta E
    rms = np.stack([np.sqrt((delta[:, top:bottom] ** 2).sum((1, 2)) / ((bottom - top) * HALF))
                    for top, bottom in WINDOWS], axis=1)
    return rms, rms / (own_x + own_y + 1.0)


def match(x: np.ndarray, y: np.ndarray, own_x: np.ndarray, own_y: np.ndarray, max_delta_e: float,
          max_relative: float) -> np.ndarray:
    """Per pair: the best Delta E among the windows that pass both checks, else inf (no match)."""
    delta_e, relative = distances(x, y, own_x, own_y)
    passed = (delta_e <= max_delta_e + 1e-4) & (relative <= max_relative)
    return np.where(passed, delta_e, np.inf).min(axis=1)


def similarity(delta_e: np.ndarray) -> np.ndarray:
    """A pair's similarity in [0, 1]: 1 - Delta E / 100 (the detector's threshold is on it)."""
    return (1.0 - np.asarray(delta_e, np.float64) / 100.0).astype(np.float32)


def search_vectors(values: np.ndarray) -> np.ndarray:
    """(n, d + 1) float32 unit vectors: the middle rows of CIELAB layouts (n, GRID, HALF, 3) and ``ROOF``.

    Normalising (v, ROOF) is a contraction by at least 1 / ROOF, so two layouts whose middle rows lie within
    Euclidean distance D have cosine >= 1 - (D / ROOF)^2 / 2 (``candidate_cosine``)."""
    middle = values[:, MIDDLE[0]:MIDDLE[1]].reshape(len(values), -1).astype(np.float64)
    lifted = np.concatenate([middle, np.full((len(values), 1), ROOF)], axis=1)
    return (lifted / np.linalg.norm(lifted, axis=1, keepdims=True)).astype(np.float32)


class Tone(NamedTuple):
    """What a brightness, contrast or gamma edit keeps of layouts (n, GRID, HALF, 3), in their ``MIDDLE`` rows: a
    banner over up to a quarter of the height is outside them (over the whole image, a banner shared by two
    near-flat designs is most of their shape)."""

    shape: np.ndarray  # (n, cells): grey L (``grey_level``) less its mean, unit length (zero where flat)
    spread: np.ndarray  # (n,): RMS of grey L about its mean
    hue: np.ndarray  # (n, 2 cells): the (a, b) layout, unit length
    change: np.ndarray  # (n, 2 cells): the (a, b) layout less its mean, unit length
    chroma_spread: np.ndarray  # (n,): RMS of the (a, b) layout about its mean
    chroma: np.ndarray  # (n,): RMS chroma
    level: np.ndarray  # (n, cells): grey L itself

    def take(self, rows: np.ndarray) -> Tone:
        """The ``Tone`` of layouts ``rows`` (indices, repeats allowed): a pair's statistics come from its rows'."""
        return Tone(*(field[rows] for field in self))


def tone(values: np.ndarray) -> Tone:
    """The ``Tone`` of layouts (n, GRID, HALF, 3)."""
    cells = values[:, MIDDLE[0]:MIDDLE[1]].reshape(len(values), -1, 3).astype(np.float64)
    level, ab = grey_level(cells), cells[..., 1:]
    centred = level - level.mean(1, keepdims=True)
    flat_ab, change = ab.reshape(len(values), -1), (ab - ab.mean(1, keepdims=True)).reshape(len(values), -1)
    return Tone(_unit(centred), np.sqrt((centred ** 2).mean(1)), _unit(flat_ab), _unit(change),
                np.sqrt((change ** 2).sum(1) / cells.shape[1]), np.sqrt((flat_ab ** 2).sum(1) / cells.shape[1]), level)


def grey_level(values: np.ndarray) -> np.ndarray:
    """CIELAB L of a greyscale copy of each cell (..., 3): the cell's sRGB (the thumbnail averages sRGB, so the
    cell's Lab comes back to it) to ITU-R 601 luma, as PIL's and most greyscale conversions weigh it. A grey cell
    keeps its own L; a colour cell's L and its grey L differ by up to 20 (saturated red)."""
    f_y = (values[..., 0] + 16) / 116
    f = np.stack([f_y + values[..., 1] / 500, f_y, f_y - values[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE
    linear = np.clip(xyz @ np.linalg.inv(_SRGB_TO_XYZ).T, 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    luma = srgb @ np.array([0.299, 0.587, 0.114])
    return lab(np.repeat(255 * luma[..., None], 3, axis=-1))[..., 0]


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 1e-9)


def tone_match(tx: Tone, ty: Tone, config: ToneConfig) -> np.ndarray:
    """Per pair of layouts, given by their tones (tx[i], ty[i]: ``Tone.take`` of one ``tone`` per row): how much of
    the photometric match's limits it uses, the worst of its checks (0: the same tone, 1: at a limit), else inf (no
    match; see ``ToneConfig``). Two colour layouts: L correlation, hue and change cosines, each within its limit
    and the three shortfalls (each over its limit's) summing to at most 2: a pair near every limit at once is two
    designs whose tones are alike, a photometric copy is near one at most (tuning split). Two colour layouts flat
    in grey L whose colour changes (``tinted``, a mark as light as its background): hue and change cosines. A grey
    and a colour one: L correlation and RMS L difference. Two grey ones are the raw match's."""
    corr, hue, change = ((u * v).sum(1) for u, v in ((tx.shape, ty.shape), (tx.hue, ty.hue), (tx.change, ty.change)))
    deficits = np.stack([(1 - corr) / (1 - config.min_correlation), (1 - hue) / (1 - config.min_hue),
                         (1 - change) / (1 - config.min_change)])
    coloured = np.maximum(deficits.max(0), deficits.sum(0) / 2)  # near all three limits at once: two designs
    tints = np.maximum((1 - hue) / (1 - config.min_hue), (1 - change) / (1 - config.tint_min_change))
    delta_l = np.sqrt(((tx.level - ty.level) ** 2).mean(1))
    greyed = np.maximum((1 - corr) / (1 - config.grey_min_correlation), delta_l / config.grey_max_delta_l)
    (shaped_x, tinted_x, grey_x), (shaped_y, tinted_y, grey_y) = kinds(tx, config), kinds(ty, config)
    used = np.select([shaped_x & shaped_y & ~grey_x & ~grey_y, tinted_x & tinted_y,
                      shaped_x & shaped_y & (grey_x ^ grey_y)], [coloured, tints, greyed], np.inf)
    return np.where(used <= 1 + 1e-9, used, np.inf)


def kinds(t: Tone, config: ToneConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shaped: grey L spread at least ``min_spread``; tinted: not shaped, a colour layout whose (a, b) spread is at
    least ``tint_min_spread``; grey: RMS chroma under ``grey_chroma``) of each layout."""
    grey = t.chroma < config.grey_chroma
    shaped = t.spread >= config.min_spread
    return shaped, ~shaped & ~grey & (t.chroma_spread >= config.tint_min_spread), grey


def tone_vectors(t: Tone, config: ToneConfig) -> tuple[np.ndarray, np.ndarray]:
    """(rows, unit vectors float32): the layouts of ``t`` (the ``tone`` of layouts (n, GRID, HALF, 3)) that are
    shaped or tinted (``kinds``: what ``tone_match`` can pair) and their search vectors: the L shape (shaped) or
    the change (tinted) with weight sqrt(TONE_L), beside the hue with weight sqrt(1 - TONE_L), none for a grey
    layout (see ``tone_cosine``)."""
    shaped, tinted, grey = kinds(t, config)
    parts = [np.sqrt(TONE_L) * t.shape * shaped[:, None], np.sqrt(TONE_L) * t.change * tinted[:, None],
             np.sqrt(1 - TONE_L) * t.hue * ~grey[:, None]]
    rows = np.flatnonzero(shaped | tinted)
    return rows, _unit(np.concatenate(parts, axis=1)[rows]).astype(np.float32)


def tone_cosine(config: ToneConfig) -> float:
    """The cosine of ``tone_vectors`` every photometric match reaches: two shaped colour layouts, TONE_L x
    correlation + (1 - TONE_L) x hue cosine; two tinted ones, the same with the change cosine; a grey and a colour
    layout (the grey one is its shape alone), sqrt(TONE_L) x correlation."""
    colour = TONE_L * min(config.min_correlation, config.tint_min_change) + (1 - TONE_L) * config.min_hue
    return float(min(colour, np.sqrt(TONE_L) * config.grey_min_correlation) - 1e-5)


def candidate_cosine(max_delta_e: float) -> float:
    """The cosine every match reaches: a window's RMS Delta E <= max_delta_e bounds the Euclidean distance of
    the middle rows (inside every window, at most GRID x HALF cells) by max_delta_e x sqrt(GRID x HALF)."""
    reach = max_delta_e * np.sqrt(GRID * HALF)
    return float(1.0 - (reach / ROOF) ** 2 / 2 - 1e-6)


class LayoutHasher:
    """Score stage: reads ``RgbArray`` of the content region, writes ``layout_code`` (``LAYOUT_BYTES`` bytes,
    see ``layout``); an image that does not decode gets null. The layout detector uses it for the images
    whose PDQ quality is under ``dedup.pdq.min_quality + dedup.layout.quality_margin``."""

    reads = ()
    writes = (col.LAYOUT_CODE,)

    @staticmethod
    def needs(config: LayoutConfig) -> tuple[RgbArray]:
        return (CONTENT_RGB,)

    def __init__(self, config: LayoutConfig) -> None:
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = ensure(batch, (CONTENT_RGB,))
        out = np.full(len(batch[DECODED]), None, dtype=object)
        for i, (ok, rgb) in enumerate(zip(batch[DECODED], batch[CONTENT_RGB.column])):
            if ok:
                out[i] = layout(rgb).tobytes()
        batch[col.LAYOUT_CODE] = out
        return batch


def layout_matches(rows: np.ndarray, a: np.ndarray, b: np.ndarray, config: LayoutConfig,
                   tones: Tone | None = None) -> tuple[np.ndarray, ...]:
    """The candidate pairs (a, b: row numbers in ``rows``) whose layouts match, with their similarity. What one
    layout has alone (its ``variation``, its ``Tone``: ``tones`` when the caller has those of every row) is
    computed once per row, not per pair: a row is in many candidate pairs."""
    if len(a) == 0:
        return a, b, np.empty(0, np.float32)
    used, at = np.unique(np.concatenate([a, b]), return_inverse=True)
    ia, ib = at[:len(a)], at[len(a):]
    values = unpack(rows[used])
    own = variation(values)
    delta_e = match(values[ia], values[ib], own[ia], own[ib], config.max_delta_e, config.max_relative)
    if config.tone.enabled:  # a photometric match at its limits counts as Delta E max_delta_e
        t = tone(values) if tones is None else tones.take(used)
        delta_e = np.minimum(delta_e, config.max_delta_e * tone_match(t.take(ia), t.take(ib), config.tone))
    sim = similarity(delta_e)
    keep = np.isfinite(delta_e) & (sim >= config.stored_from - 1e-6)
    return a[keep], b[keep], sim[keep]
