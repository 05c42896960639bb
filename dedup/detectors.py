"""Each detector: score-phase columns -> duplicate pairs (sample_a < sample_b, detector, similarity)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from dedup.artefacts import SampleIndex, binary_matrix, column_matrix, hex_matrix, iter_column
from dedup.cluster import PAIRS_SCHEMA, named_pairs
from dedup.config import LayoutConfig, PdqConfig, PHashConfig, SearchConfig, SscdConfig, ToneConfig
from dedup.layout import (LAYOUT_BYTES, Tone, candidate_cosine, layout_matches, search_vectors, tone, tone_cosine,
                          tone_vectors, unpack)
from dedup.pdq import HUE_BINS, colour_signatures, compatible, row_width, unpack_rows, variants
from dedup.phash import split_codes
from dedup.search import binary_pairs, float_pairs, region_pairs
from dedup.verify import pair_inliers
from manifests import schema as col


def phash_pairs(config: PHashConfig, search: SearchConfig, files: list[Path], index: SampleIndex) -> pl.DataFrame:
    nbytes = config.bits // 8
    pos, values = column_matrix(files, col.PHASH, index, lambda v: v.to_pylist())
    if values is None:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    codes, mirrored = split_codes(pl.Series(values, dtype=pl.String))
    max_distance = math.floor((1.0 - config.stored_from) * config.bits + 1e-9)
    a, b, sim = binary_pairs(hex_matrix(codes.to_arrow(), nbytes), max_distance, search,
                             None if mirrored is None else hex_matrix(mirrored.to_arrow(), nbytes))
    return named_pairs(index, pos[a], pos[b], sim, "phash")


def sscd_pairs(config: SscdConfig, search: SearchConfig, files: list[Path], index: SampleIndex) -> pl.DataFrame:
    pos, vectors = column_matrix(files, col.SSCD_EMBEDDING, index,
                                 lambda v: binary_matrix(v, np.float32, config.dims))
    if vectors is None:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    a, b, sim = float_pairs(vectors, config.stored_from, search)
    blank_pos, blank = column_matrix(files, col.SSCD_BLANK_SIMILARITY, index, lambda v: v.to_numpy(zero_copy_only=False))
    if blank is not None:  # scored before the guard existed: no column, no refusal
        near_blank = np.zeros(len(index), dtype=bool)
        near_blank[blank_pos] = blank >= config.max_blank_similarity
        keep = ~(near_blank[pos[a]] & near_blank[pos[b]])
        a, b, sim = a[keep], b[keep], sim[keep]
    return named_pairs(index, pos[a], pos[b], sim, "sscd")


def pdq_codes(config: PdqConfig, files: list[Path], index: SampleIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, codes (n, V + R, 32), usable (n, V + R)): a code is usable when its region's PDQ
    quality reaches ``min_quality``; a low-information image has no usable code and so no pairs."""
    pos, rows = column_matrix(files, col.PDQ_CODES, index, lambda v: binary_matrix(v, np.uint8, row_width(config)))
    if rows is None:
        return pos, np.empty((0, variants(config) + len(config.regions), 32), np.uint8), np.empty((0, 0), bool)
    _, quality = column_matrix(files, col.PDQ_QUALITY, index, lambda v: v.to_numpy(zero_copy_only=False))
    codes, region_quality = unpack_rows(rows, quality.astype(np.int64), config)
    return pos, codes, region_quality >= config.min_quality


def pdq_pairs(config: PdqConfig, search: SearchConfig, files: list[Path], index: SampleIndex) -> pl.DataFrame:
    """Every usable region code in one binary index; the un-rotated codes of every region query it.

    With ``verify``, pairs up to ``verify.max_distance`` are found and those beyond the threshold count
    (detector ``pdq_verified``) only when ORB + RANSAC verifies them; with ``verify_all`` every pair must.
    """
    pos, codes, usable = pdq_codes(config, files, index)
    if len(pos) < 2:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    owner = np.broadcast_to(np.arange(len(pos))[:, None], usable.shape)
    queried = usable.copy()
    queried[:, 1:variants(config)] = False  # rotated copies of the full region are matched in the index only
    near_distance = math.floor((1.0 - config.stored_from) * 256 + 1e-9)
    verify = config.verify
    radius = max(near_distance, verify.max_distance) if verify.enabled else near_distance
    colours = pdq_colours(config, files, index, pos)
    allowed = None if colours is None else lambda x, y: compatible(colours[x], colours[y], config)
    a, b, sim = region_pairs(codes[usable], owner[usable], codes[queried], owner[queried], radius, search,
                             near_distance, allowed)
    near = sim >= 1.0 - near_distance / 256 - 1e-6
    if not verify.enabled:
        return named_pairs(index, pos[a], pos[b], sim, "pdq")
    check = ~near | verify.verify_all
    passed = np.zeros(len(a), dtype=bool)
    if check.any():
        passed[check] = verified(files, index, pos[a[check]], pos[b[check]], config)
    keep_near = near & passed if verify.verify_all else near
    far = ~near & passed
    return pl.concat([named_pairs(index, pos[a[keep_near]], pos[b[keep_near]], sim[keep_near], "pdq"),
                      named_pairs(index, pos[a[far]], pos[b[far]], sim[far], "pdq_verified")])


def pdq_colours(config: PdqConfig, files: list[Path], index: SampleIndex, pos: np.ndarray) -> np.ndarray | None:
    """The ``pdq_colour`` signatures (len(pos), HUE_BINS) of the samples at ``pos``, which the colour gate
    (``dedup.pdq.compatible``) compares before a hit counts; None with the gate off. A sample without one
    (scored before the gate) gets a zero signature: compatible with every image."""
    if config.min_colour_overlap <= 0:
        return None
    signatures = np.zeros((len(index), HUE_BINS), np.float16)
    cpos, rows = column_matrix(files, col.PDQ_COLOUR, index, colour_signatures)
    if rows is not None:
        signatures[cpos] = rows
    return signatures[pos]


def layout_descriptors(config: LayoutConfig, pdq: PdqConfig, files: list[Path],
                       index: SampleIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions, layout rows (n, LAYOUT_BYTES), low (n,)): every stored layout, and whether its image's PDQ
    quality is under ``pdq.min_quality + config.quality_margin`` (PDQ cannot hash it, or barely)."""
    pos, rows = column_matrix(files, col.LAYOUT_CODE, index, lambda v: binary_matrix(v, np.uint8, LAYOUT_BYTES))
    if rows is None:
        return pos, np.empty((0, LAYOUT_BYTES), np.uint8), np.empty(0, bool)
    qpos, quality = column_matrix(files, col.PDQ_QUALITY, index, lambda v: v.to_numpy(zero_copy_only=False))
    low = np.zeros(len(index), dtype=bool)
    if quality is not None:
        low[qpos] = quality.astype(np.int64) < pdq.min_quality + config.quality_margin
    return pos, rows, low[pos]


def layout_pairs(config: LayoutConfig, pdq: PdqConfig, search: SearchConfig, files: list[Path],
                 index: SampleIndex) -> pl.DataFrame:
    """Pairs with at least one image under the quality band: candidates from an inner-product search of the
    layouts' middle rows (``dedup.layout.search_vectors``; exact up to ``search.exact_max``, IVF beyond), each
    checked by ``dedup.layout.match``. A copy whose quality a banner or an edit lifted over the band still
    meets its original."""
    pos, rows, low = layout_descriptors(config, pdq, files, index)
    if len(pos) < 2 or not low.any():
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    values = unpack(rows)
    a, b, _ = float_pairs(search_vectors(values), candidate_cosine(config.max_delta_e), search)
    tones = tone(values) if config.tone.enabled else None  # once per layout: the search's and the check's
    if tones is not None:
        a, b = with_tone_candidates(tones, config.tone, search, a, b)
    either = low[a] | low[b]  # two images PDQ hashes are PDQ's to pair
    a, b, sim = layout_matches(rows, a[either], b[either], config, tones)
    return named_pairs(index, pos[a], pos[b], sim, "layout")


def with_tone_candidates(tones: Tone, config: ToneConfig, search: SearchConfig, a: np.ndarray,
                         b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (a, b) and those an inner-product search of the photometric vectors (``dedup.layout.tone_vectors``
    of the layouts' ``tones``, ``tone_cosine``) finds, each once, a < b."""
    rows, vectors = tone_vectors(tones, config)
    ta, tb, _ = float_pairs(vectors, tone_cosine(config), search)
    n = len(tones.spread)
    keys = np.unique(np.concatenate([a.astype(np.int64) * n + b, rows[ta].astype(np.int64) * n + rows[tb]]))
    return keys // n, keys % n


def verified(files: list[Path], index: SampleIndex, a: np.ndarray, b: np.ndarray, config: PdqConfig) -> np.ndarray:
    """Which pairs (run positions) pass geometric verification (``verify.pair_inliers``)."""
    inliers = scores(files, index, a, b, config, lambda x, y: pair_inliers(x, y, config.verify))
    return inliers >= config.verify.min_inliers


def scores(files: list[Path], index: SampleIndex, a: np.ndarray, b: np.ndarray, config: PdqConfig,
           score: Callable[[bytes, bytes], float]) -> np.ndarray:
    """``score`` of each pair's keypoints (run positions). Pairs are taken in chunks whose samples number
    at most ``verify.cache_samples``; each chunk reads the keypoints of its samples only."""
    out = np.zeros(len(a), dtype=np.float64)
    order = np.lexsort((b, a))
    start = 0
    while start < len(order):
        end, seen = start, set()
        while end < len(order) and len(seen | {int(a[order[end]]), int(b[order[end]])}) <= config.verify.cache_samples:
            seen.update((int(a[order[end]]), int(b[order[end]])))
            end += 1
        chunk = order[start:end]
        features = _keypoints(files, index, np.array(sorted(seen)))
        out[chunk] = [score(features[int(a[i])], features[int(b[i])]) for i in chunk]
        start = end
    return out


def _keypoints(files: list[Path], index: SampleIndex, wanted: np.ndarray) -> dict[int, bytes]:
    features: dict[int, bytes] = {}
    for ids, values in iter_column(files, col.ORB_FEATURES):
        pos = index.positions(ids)
        for k in np.flatnonzero(np.isin(pos, wanted)):
            features[int(pos[k])] = values[int(k)].as_py()
    if len(features) < len(wanted):
        raise RuntimeError("dedup.pdq.verify is on but the score phase wrote no orb_features for some samples: "
                           "re-run the score phase with dedup.pdq.verify.enabled=true")
    return features
