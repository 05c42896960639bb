"""Semantic duplicates (SemDeDup) from the stored CLIP image embeddings: k-means, then exact cosine
search inside each cluster.

k-means (FAISS, spherical) trains on a sample and assigns every row to its nearest centroid; rows are
spilled to bucket files holding whole clusters, and each cluster is searched exhaustively in blocks of
matrix products, so within a cluster the pairs are exactly those a brute-force search finds (capped at
``max_neighbours`` per row). Memory is one record batch, then one bucket (``bucket_rows`` rows), never the
run. Work per cluster is its size squared: the default k keeps clusters near ``rows_per_cluster`` rows.
Each row's cosine to its centroid is kept too, for the "least prototypical" keep option.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Literal

import faiss
import numpy as np
import polars as pl
import pyarrow as pa

from dedup.artefacts import SampleIndex, iter_column
from dedup.cluster import group_rows, named_pairs
from dedup.config import SemanticConfig
from manifests import schema as col
from manifests.io import parquet_rows

CENTROID_DISTANCE = col.CENTROID_DISTANCE
_BLOCK = 2048  # query rows per similarity block


def embedding_rows(values: pa.Array) -> np.ndarray:
    """The clip_embedding column (a tensor, list or fixed-size-list column of float16/32) -> (n, d) float32."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values.type, pa.ExtensionType):
        values = values.storage
    if len(values) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(values), -1)


def unit_vectors(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to unit norm, and the mask of rows that have an embedding (CLIP writes zeros otherwise)."""
    norms = np.linalg.norm(vectors, axis=1)
    ok = norms > 0
    return np.ascontiguousarray(vectors[ok] / norms[ok, None], dtype=np.float32), ok


def cluster_count(n: int, config: SemanticConfig) -> int:
    return max(1, min(n, config.clusters or math.ceil(n / config.rows_per_cluster)))


def train_centroids(sample: np.ndarray, k: int, config: SemanticConfig) -> np.ndarray:
    """(k, d) unit centroids of spherical k-means on ``sample`` (unit rows); k = 1 is the normalised mean."""
    if k == 1:
        centroid = sample.mean(axis=0, keepdims=True)
        return centroid / max(float(np.linalg.norm(centroid)), 1e-12)
    kmeans = faiss.Kmeans(sample.shape[1], k, niter=config.iterations, spherical=True, seed=config.seed,
                          min_points_per_centroid=1, max_points_per_centroid=max(1, len(sample) // k + 1))
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    return kmeans.centroids


def assign(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nearest centroid, cosine to it) of each unit row, ``_BLOCK`` rows at a time (memory: a block x k).
    In float64, then rounded: a float32 product's last bit follows the batch's shape in BLAS, and a row's
    distance must not depend on the file or batch it sits in."""
    labels, best = np.empty(len(vectors), np.int64), np.empty(len(vectors), np.float32)
    centres = centroids.T.astype(np.float64)
    for start in range(0, len(vectors), _BLOCK):
        sims = vectors[start:start + _BLOCK].astype(np.float64) @ centres
        labels[start:start + _BLOCK] = top = sims.argmax(axis=1)
        best[start:start + _BLOCK] = sims[np.arange(len(sims)), top]
    return labels, best


def within_cluster_pairs(vectors: np.ndarray, labels: np.ndarray, threshold: float,
                         max_neighbours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, cosine) with a < b, same label, cosine >= threshold; each row keeps its ``max_neighbours``
    most similar partners among later rows of its cluster."""
    k = int(labels.max()) + 1 if len(labels) else 0
    members, offsets = group_rows(labels, np.arange(len(labels)), k)
    out_a, out_b, out_s = [], [], []
    for c in range(k):
        rows = members[offsets[c]:offsets[c + 1]]
        if len(rows) < 2:
            continue
        block_vectors = vectors[rows]
        for start in range(0, len(rows), _BLOCK):
            sims = block_vectors[start:start + _BLOCK] @ block_vectors.T
            i, j = np.nonzero(sims >= threshold)
            later = j > i + start
            i, j = i[later], j[later]
            s = sims[i, j]
            keep = _top_per_row(i, s, max_neighbours)
            out_a.append(rows[i[keep] + start])
            out_b.append(rows[j[keep]])
            out_s.append(s[keep])
    if not out_a:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
    a, b, s = np.concatenate(out_a), np.concatenate(out_b), np.concatenate(out_s)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return lo, hi, s.astype(np.float32)


def bucket_pairs(stored: np.ndarray, labels: np.ndarray,
                 config: SemanticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``within_cluster_pairs`` of a bucket's rows (float16 as spilled, in sample_id order) at ``stored_from``."""
    vectors = stored.astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # float16 storage rounds
    a, b, sim = within_cluster_pairs(vectors, labels, config.stored_from - 1e-6, config.max_neighbours)
    return a, b, np.minimum(sim, 1.0)


def _top_per_row(rows: np.ndarray, sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``sims`` of each row value."""
    order = np.lexsort((-sims, rows))
    first = np.searchsorted(rows[order], rows[order], side="left")
    return order[np.arange(len(order)) - first < k]


def embedded(files: list[Path]) -> Iterator[tuple[pl.Series, np.ndarray]]:
    """(sample_ids, unit vectors) of the rows with an embedding, one record batch at a time."""
    for ids, values in iter_column(files, col.CLIP_EMBEDDING):
        vectors, ok = unit_vectors(embedding_rows(values))
        yield ids.filter(pl.Series(ok)), vectors


def in_sample(ids: pl.Series, share: float, seed: int) -> np.ndarray:
    """Whether each sample is in the k-means training sample: a seeded hash of its sample_id below ``share``,
    so the sample depends on neither the files the rows sit in nor their order (a task per file draws it)."""
    return ((ids.hash(seed=seed).to_numpy() >> np.uint64(11)) / float(1 << 53)) < share


def sample_share(rows: int, config: SemanticConfig) -> float:
    """The share of rows drawn to train on: about ``train_sample`` of ``rows`` (the score files' row count)."""
    return min(1.0, config.train_sample / max(rows, 1))


def training_sample(files: list[Path], index: SampleIndex, config: SemanticConfig) -> np.ndarray:
    """About ``train_sample`` unit rows (``in_sample``), in sample_id order, read a batch at a time."""
    share = sample_share(parquet_rows(files), config)
    positions, parts = [], []
    for ids, vectors in embedded(files):
        drawn = in_sample(ids, share, config.seed)
        positions.append(index.positions(ids.filter(pl.Series(drawn))))
        parts.append(vectors[drawn])
    if not parts:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(parts)[np.argsort(np.concatenate(positions), kind="stable")]


def bucket_rows(files: list[Path], index: SampleIndex, centroids: np.ndarray, work: Path,
                buckets: int) -> tuple[list[Path], pl.DataFrame]:
    """Each row to the bucket of its cluster (label mod buckets) as .npz parts under ``work``; and every row's
    centroid distance. A bucket holds whole clusters, so clusters are searched one bucket in memory at a time."""
    work.mkdir(parents=True, exist_ok=True)
    ids, distances = [], []
    for part, (sample_ids, vectors) in enumerate(embedded(files)):
        pos = index.positions(sample_ids)
        labels, sims = assign(vectors, centroids)
        for b in np.unique(labels % buckets):
            mine = labels % buckets == b
            np.savez(work / f"bucket-{b:05d}-{part:06d}.npz", pos=pos[mine], labels=labels[mine],
                     vectors=vectors[mine].astype(np.float16))
        ids.append(pos)
        distances.append(1.0 - sims)
    pos = np.concatenate(ids) if ids else np.empty(0, np.int64)
    frame = pl.DataFrame({col.SAMPLE_ID: index.names(pos),
                          CENTROID_DISTANCE: pl.Series(np.concatenate(distances) if distances else [],
                                                       dtype=pl.Float32)})
    return sorted(work.glob("bucket-*.npz")), frame.sort(col.SAMPLE_ID)


def semantic_pairs(config: SemanticConfig, files: list[Path], index: SampleIndex,
                   work: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pairs in the pairs-table layout, sample_id + centroid_distance of every embedded row).

    Three passes over the score files: a training sample for k-means, assignment into buckets of whole
    clusters (spilled to ``work``), then an exact search inside each cluster, one bucket in memory at a time.
    """
    sample = training_sample(files, index, config)
    if not len(sample):
        empty = pl.DataFrame(schema={col.SAMPLE_ID: pl.String, CENTROID_DISTANCE: pl.Float32})
        return named_pairs(index, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32),
                           "semantic"), empty
    k = cluster_count(parquet_rows(files), config)
    centroids = train_centroids(sample, min(k, len(sample)), config)
    buckets = max(1, math.ceil(len(index) / config.bucket_rows))
    parts, distances = bucket_rows(files, index, centroids, work, buckets)
    found = []
    for b in range(buckets):
        loaded = [np.load(p) for p in parts if p.name.startswith(f"bucket-{b:05d}-")]
        if not loaded:
            continue
        pos = np.concatenate([z["pos"] for z in loaded])
        order = np.argsort(pos, kind="stable")  # a cluster's rows in sample_id order, whatever the files
        pos = pos[order]
        a, b_, sim = bucket_pairs(np.concatenate([z["vectors"] for z in loaded])[order],
                                  np.concatenate([z["labels"] for z in loaded])[order], config)
        lo, hi = np.minimum(pos[a], pos[b_]), np.maximum(pos[a], pos[b_])
        found.append(named_pairs(index, lo, hi, sim, "semantic"))
    empty_pairs = named_pairs(index, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32), "semantic")
    return pl.concat([empty_pairs, *found]), distances


def removed_by_eps(pairs: pl.DataFrame, eps_values: list[float],
                   mode: Literal["greedy", "component"] = "greedy") -> list[tuple[float, int]]:
    """(eps, rows the semantic pairs alone would drop) for each eps, re-clustering the stored pairs."""
    from dedup.cluster import DETECTOR, cluster

    semantic = pairs.filter(pl.col(DETECTOR) == "semantic")
    out = []
    for eps in eps_values:
        dups = cluster(semantic, {"semantic": 1.0 - eps}, mode=mode)
        out.append((eps, dups.filter(pl.col(col.DUPLICATE_OF).is_not_null()).height))
    return out
