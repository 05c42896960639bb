"""All pairs above a similarity threshold among n descriptors, with FAISS.

Float descriptors (L2-normalised, so inner product = cosine): an exact ``IndexFlatIP`` search up to
``exact_max`` rows. Beyond that, on CPU, an IVF self-join (``dedup.ivfjoin``): the rows are split into
k-means lists and each list is compared, as one matrix product, with the rows that probe it; on a GPU
(faiss with GPU support that sees one) an ``IndexIVFFlat`` search instead. Each row keeps its ``k``
nearest neighbours that reach the threshold.

Binary codes (pHash): ``IndexBinaryFlat`` range search by Hamming radius, ``IndexBinaryIVF`` beyond
``exact_max``. Both kinds return (a, b, similarity) with a < b, sorted, so results do not depend on
batch boundaries.
"""

from __future__ import annotations

import logging
from typing import Callable

import faiss
import numpy as np

from dedup.config import SearchConfig
from dedup.ivfjoin import ivf_self_join

log = logging.getLogger(__name__)


def _pairs(a: list[np.ndarray], b: list[np.ndarray], s: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    if not a:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    a, b, s = np.concatenate(a), np.concatenate(b), np.concatenate(s)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    lo, hi, s = lo[keep], hi[keep], s[keep]
    order = np.lexsort((-s, hi, lo))
    lo, hi, s = lo[order], hi[order], s[order]
    first = np.ones(len(lo), dtype=bool)  # a pair found twice (from both ends, or mirrored) keeps its best
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return lo[first], hi[first], s[first].astype(np.float32)


def _gpu_available(config: SearchConfig) -> bool:
    return config.use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _gpu(index: faiss.Index, config: SearchConfig) -> faiss.Index:
    if _gpu_available(config):
        return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def build_float_index(vectors: np.ndarray, config: SearchConfig) -> faiss.Index:
    n, d = vectors.shape
    if n <= config.exact_max:
        index = _gpu(faiss.IndexFlatIP(d), config)
    else:
        nlist = config.nlist or int(4 * np.sqrt(n))
        cpu = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        cpu.cp.niter = config.train_iterations
        index = _gpu(cpu, config)
        rng = np.random.default_rng(config.seed)
        sample = np.sort(rng.choice(n, size=min(n, max(config.train_sample, nlist * 39)), replace=False))
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
        space = faiss.ParameterSpace() if index is cpu else faiss.GpuParameterSpace()
        space.set_index_parameter(index, "nprobe", config.nprobe)
    for start in range(0, n, config.add_batch):
        index.add(np.ascontiguousarray(vectors[start:start + config.add_batch], dtype=np.float32))
    return index


def float_pairs(vectors: np.ndarray, threshold: float, config: SearchConfig) -> tuple[np.ndarray, ...]:
    """(a, b, cosine) of every pair found with cosine >= threshold, a < b."""
    n = len(vectors)
    if n < 2:
        return _pairs([], [], [])
    if n > config.exact_max and not _gpu_available(config):
        return _pairs(*ivf_self_join(vectors, threshold, config))
    index = build_float_index(vectors, config)
    k = min(config.k, n)
    out_a, out_b, out_s = [], [], []
    saturated = 0
    for start in range(0, n, config.query_batch):
        query = np.ascontiguousarray(vectors[start:start + config.query_batch], dtype=np.float32)
        sims, ids = index.search(query, k)
        hit = (sims >= threshold) & (ids >= 0)
        saturated += int(hit[:, -1].sum())
        rows = np.nonzero(hit)
        out_a.append(rows[0] + start)
        out_b.append(ids[rows])
        out_s.append(sims[rows])
    if saturated:
        log.warning("%d queries had all k=%d neighbours above the threshold; raise dedup.search.k "
                    "to find more pairs per sample (clusters stay connected through the ones found)", saturated, k)
    return _pairs(out_a, out_b, out_s)


def build_binary_index(codes: np.ndarray, config: SearchConfig) -> faiss.IndexBinary:
    """Exact ``IndexBinaryFlat`` up to ``exact_max`` codes; beyond, ``IndexBinaryIVF`` trained on a sample."""
    n, nbytes = codes.shape
    if n <= config.exact_max:
        index = faiss.IndexBinaryFlat(nbytes * 8)
    else:
        nlist = config.nlist or int(np.sqrt(n))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(nbytes * 8), nbytes * 8, nlist)
        sample = np.sort(np.random.default_rng(config.seed).choice(n, min(n, config.train_sample), replace=False))
        index.train(np.ascontiguousarray(codes[sample]))
        index.nprobe = config.nprobe
    for start in range(0, n, config.add_batch):
        index.add(np.ascontiguousarray(codes[start:start + config.add_batch], dtype=np.uint8))
    return index


def binary_pairs(codes: np.ndarray, max_distance: int, config: SearchConfig,
                 mirrored: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(a, b, 1 - hamming/bits) of every pair with Hamming distance <= max_distance, a < b.

    ``mirrored`` (codes of the left-right mirrored images, same rows) are searched too, so a flipped
    copy is found: a pair's similarity is the better of the two. Exact up to ``config.exact_max``
    codes; beyond, an IVF index finds the pairs whose codes fall in the ``nprobe`` nearest lists.
    """
    n, nbytes = codes.shape
    if n < 2:
        return _pairs([], [], [])
    bits = nbytes * 8
    index = build_binary_index(codes, config)
    out_a, out_b, out_s = [], [], []
    for queries in (codes, mirrored):
        for start in range(0, n if queries is not None else 0, config.query_batch):
            # faiss returns distances strictly below the radius.
            batch = np.ascontiguousarray(queries[start:start + config.query_batch], dtype=np.uint8)
            lims, dist, ids = index.range_search(batch, max_distance + 1)
            out_a.append(np.repeat(np.arange(len(batch)), np.diff(lims.astype(np.int64))) + start)
            out_b.append(ids.astype(np.int64))
            out_s.append(1.0 - dist.astype(np.float32) / bits)
    return _pairs(out_a, out_b, out_s)


def _cap_far(row: np.ndarray, dist: np.ndarray, near: int, k: int) -> np.ndarray:
    """Which hits to keep: every hit within ``near``, and each query row's ``k`` closest beyond it."""
    keep = np.ones(len(dist), dtype=bool)
    far = np.flatnonzero(dist > near)
    if len(far) <= k:
        return keep
    far = far[np.lexsort((dist[far], row[far]))]
    starts = np.flatnonzero(np.r_[True, row[far][1:] != row[far][:-1]])
    rank = np.arange(len(far)) - np.repeat(starts, np.diff(np.r_[starts, len(far)]))
    keep[far[rank >= k]] = False
    return keep


def region_pairs(index_codes: np.ndarray, index_owner: np.ndarray, query_codes: np.ndarray,
                 query_owner: np.ndarray, max_distance: int, config: SearchConfig,
                 near_distance: int | None = None,
                 allowed: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
    """(a, b, 1 - hamming/bits) between owners (samples) of several codes each, a < b.

    Every query code is range-searched among ``index_codes`` (exact up to ``exact_max`` codes, IVF
    beyond); a hit between two codes of one owner is no pair, nor one between owners ``allowed`` refuses
    (a boolean per (query owner, index owner)), and a pair of owners keeps its best (closest) code match.
    Hits farther than ``near_distance`` (candidates for verification) are kept for each query code's
    ``config.k`` closest of the rest only, so a crowd of look-alikes cannot grow the result past
    queries x k. Memory: the index, one query batch of hits, and the pairs found.
    """
    if len(index_codes) < 2 or len(query_codes) == 0:
        return _pairs([], [], [])
    bits = index_codes.shape[1] * 8
    index = build_binary_index(index_codes, config)
    out_a, out_b, out_s = [], [], []
    for start in range(0, len(query_codes), config.query_batch):
        batch = np.ascontiguousarray(query_codes[start:start + config.query_batch], dtype=np.uint8)
        lims, dist, ids = index.range_search(batch, max_distance + 1)  # strictly below the radius
        row = np.repeat(np.arange(len(batch)), np.diff(lims.astype(np.int64)))
        a, b = query_owner[start + row], index_owner[ids.astype(np.int64)]
        other = a != b
        if allowed is not None:
            other[other] = allowed(a[other], b[other])
        if near_distance is not None and near_distance < max_distance:
            other &= _cap_far(row, np.where(other, dist, -1), near_distance, config.k)
        out_a.append(a[other])
        out_b.append(b[other])
        out_s.append(1.0 - dist[other].astype(np.float32) / bits)
    return _pairs(out_a, out_b, out_s)
