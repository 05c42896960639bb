"""All pairs above a cosine threshold among n float descriptors: an IVF self-join made of matrix products.

An ``IndexIVFFlat`` search compares each query with the rows of its ``nprobe`` lists one query at a
time, so at a million rows it is memory-bound and slow (see ``bench/dedup.py --only knn``). Here the
same candidates are compared list by list instead:

1. spherical k-means on a sample gives ``nlist`` centroids;
2. every row finds its ``nprobe`` nearest centroids: it is a *member* of the first and *probes* all;
3. for each list, one product ``probers @ members.T`` gives every similarity the IVF search would
   have computed (members are probers of their own list too).

A pair is found when either row's list is among the other's probes, which is exactly what an IVF search
of every row with the same ``nprobe`` finds. Lists run on a thread pool with single-threaded BLAS (numpy
lets go of the GIL), and a list is cut into blocks so one huge list (a picture copied a hundred thousand
times) cannot blow up memory. Each row keeps its ``k`` best pairs found from its side.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from dedup.cluster import group_rows
from dedup.config import SearchConfig

log = logging.getLogger(__name__)

_BLOCK = 4096  # rows per side of one similarity block: 64 MiB of float32


def train_centroids(vectors: np.ndarray, nlist: int, config: SearchConfig) -> np.ndarray:
    """Spherical k-means centroids (nlist, d) from a sample of ``train_per_list`` rows per list."""
    n, d = vectors.shape
    size = min(n, max(nlist, nlist * config.train_per_list))
    sample = np.sort(np.random.default_rng(config.seed).choice(n, size=size, replace=False))
    kmeans = faiss.Kmeans(d, nlist, niter=config.train_iterations, spherical=True, seed=config.seed,
                          min_points_per_centroid=1, max_points_per_centroid=size)
    kmeans.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    return kmeans.centroids


def nearest_lists(vectors: np.ndarray, centroids: np.ndarray, nprobe: int, batch: int) -> np.ndarray:
    """(n, nprobe) ids of each row's nearest centroids, nearest first."""
    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(centroids)
    probes = np.empty((len(vectors), nprobe), dtype=np.int64)
    for start in range(0, len(vectors), batch):
        _, probes[start:start + batch] = quantizer.search(
            np.ascontiguousarray(vectors[start:start + batch], dtype=np.float32), nprobe)
    return probes


def block_hits(sims: np.ndarray, threshold: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of entries >= threshold, at most the k largest per row."""
    rows = np.flatnonzero(sims.max(axis=1) >= threshold)
    if len(rows) == 0:
        return rows, rows
    sub = sims[rows]
    i, j = np.nonzero(sub >= threshold)
    counts = np.bincount(i, minlength=len(rows))
    if counts.max() > k:  # keep each crowded row's k best
        heavy = np.flatnonzero(counts > k)
        top = np.argpartition(-sub[heavy], k - 1, axis=1)[:, :k]
        light = counts[i] <= k
        i = np.concatenate([i[light], np.repeat(heavy, k)])
        j = np.concatenate([j[light], top.ravel()])  # a crowded row's k best all reach the threshold
    return rows[i], j


class _ListJoin:
    """Joins one list: its members against each other (a block with itself without the diagonal, a
    block with the later ones once) and against its other probers."""

    def __init__(self, vectors: np.ndarray, threshold: float, k: int) -> None:
        self.vectors, self.threshold, self.k = vectors, threshold, k

    def __call__(self, job: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        members, probers = job
        out_a, out_b, out_s = [], [], []
        for m0 in range(0, len(members), _BLOCK):
            m_ids = members[m0:m0 + _BLOCK]
            m_vec = np.ascontiguousarray(self.vectors[m_ids], dtype=np.float32)
            # This block against itself and the member blocks after it, then against every prober.
            for q_ids, own in self._query_blocks(members[m0:], probers, len(m_ids)):
                sims = np.ascontiguousarray(self.vectors[q_ids], dtype=np.float32) @ m_vec.T
                if own:  # the same rows on both sides: not a row with itself
                    np.fill_diagonal(sims, -np.inf)
                i, j = block_hits(sims, self.threshold, self.k)
                out_a.append(q_ids[i])
                out_b.append(m_ids[j])
                out_s.append(sims[i, j])
        if not out_a:
            empty = np.empty(0, np.int64)
            return empty, empty, np.empty(0, np.float32)
        return np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_s)

    @staticmethod
    def _query_blocks(members_from: np.ndarray, probers: np.ndarray, own_size: int):
        yield members_from[:own_size], True
        for rows in (members_from[own_size:], probers):
            for start in range(0, len(rows), _BLOCK):
                yield rows[start:start + _BLOCK], False


def keep_best(a: np.ndarray, b: np.ndarray, s: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """At most k pairs per ``a``, the most similar (ties: smaller ``b``)."""
    order = np.lexsort((b, -s, a))
    a, b, s = a[order], b[order], s[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    rank = np.arange(len(a)) - np.repeat(starts, np.diff(np.r_[starts, len(a)]))
    keep = rank < k
    return a[keep], b[keep], s[keep]


def ivf_self_join(vectors: np.ndarray, threshold: float,
                  config: SearchConfig) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """([a], [b], [cosine]) of the pairs with cosine >= threshold among the probed lists; a != b, unordered."""
    n = len(vectors)
    nlist = min(n, config.nlist or int(4 * np.sqrt(n)))
    nprobe = min(config.nprobe, nlist)
    start = time.perf_counter()
    centroids = train_centroids(vectors, nlist, config)
    trained = time.perf_counter()
    probes = nearest_lists(vectors, centroids, nprobe, config.query_batch)
    assigned = time.perf_counter()
    rows = np.arange(n)
    members, member_at = group_rows(probes[:, 0], rows, nlist)
    probers, prober_at = group_rows(probes[:, 1:].ravel(), np.repeat(rows, nprobe - 1), nlist)
    del probes
    jobs = [(members[member_at[c]:member_at[c + 1]], probers[prober_at[c]:prober_at[c + 1]])
            for c in np.argsort(-np.diff(member_at))  # largest lists first: the pool ends evenly
            if member_at[c + 1] > member_at[c]]
    join = _ListJoin(vectors, threshold, config.k)
    workers = faiss.omp_get_max_threads()  # read before threadpool_limits: faiss's BLAS limit lowers it
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        found = list(pool.map(join, jobs))
    log.info("IVF self-join of %d rows, nlist=%d nprobe=%d: k-means %.1f s, assignment %.1f s, join %.1f s",
             n, nlist, nprobe, trained - start, assigned - trained, time.perf_counter() - assigned)
    a, b, s = (np.concatenate(part) for part in zip(*found)) if found else (np.empty(0, np.int64),) * 3
    a, b, s = keep_best(a, b, s.astype(np.float32), config.k)
    saturated = int((np.bincount(a, minlength=n) >= config.k).sum())
    if saturated:
        log.warning("%d rows had k=%d pairs above the threshold; raise dedup.search.k to keep more pairs per "
                    "sample (clusters stay connected through the ones found)", saturated, config.k)
    return [a], [b], [s]
