"""Semantic duplicates (SemDeDup) from the stored CLIP image embeddings: k-means, then exact cosine
search inside each cluster.

k-means (FAISS, spherical) trains on a sample and assigns every row to its nearest centroid; each cluster
is then searched exhaustively in blocks of matrix products, so within a cluster the pairs are exactly
those a brute-force search finds (capped at ``max_neighbours`` per row). Work per cluster is its size
squared: the default k keeps clusters near ``rows_per_cluster`` rows. Each row's cosine to its centroid
is kept too, for the "least prototypical" keep option.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import polars as pl
import pyarrow as pa

from dedup.artefacts import SampleIndex, column_matrix
from dedup.cluster import group_rows
from dedup.config import SemanticConfig
from manifests import schema as col

CENTROID_DISTANCE = "centroid_distance"  # 1 - cosine to the row's k-means centroid: high is least prototypical
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


def kmeans_labels(vectors: np.ndarray, k: int, config: SemanticConfig) -> tuple[np.ndarray, np.ndarray]:
    """(label, cosine to its centroid) of each unit row; spherical k-means trained on a seeded sample."""
    n, d = vectors.shape
    if k == 1:
        centroid = vectors.mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        return np.zeros(n, dtype=np.int64), vectors @ centroid
    size = min(n, max(k, config.train_sample))
    sample = np.sort(np.random.default_rng(config.seed).choice(n, size=size, replace=False))
    kmeans = faiss.Kmeans(d, k, niter=config.iterations, spherical=True, seed=config.seed,
                          min_points_per_centroid=1, max_points_per_centroid=max(1, size // k + 1))
    kmeans.train(vectors[sample])
    sims, labels = kmeans.index.search(vectors, 1)
    return labels[:, 0].astype(np.int64), sims[:, 0]


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


def _top_per_row(rows: np.ndarray, sims: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``sims`` of each row value."""
    order = np.lexsort((-sims, rows))
    first = np.searchsorted(rows[order], rows[order], side="left")
    return order[np.arange(len(order)) - first < k]


def semantic_pairs(config: SemanticConfig, files: list[Path], index: SampleIndex) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pairs in the pairs-table layout, sample_id + centroid_distance of every embedded row)."""
    from dedup.detectors import named_pairs

    pos, raw = column_matrix(files, col.CLIP_EMBEDDING, index, embedding_rows)
    empty = pl.DataFrame(schema={col.SAMPLE_ID: pl.String, CENTROID_DISTANCE: pl.Float32})
    if raw is None or not len(raw):
        return named_pairs(index, pos[:0], pos[:0], np.empty(0, np.float32), "semantic"), empty
    vectors, ok = unit_vectors(raw)
    pos = pos[ok]
    if not len(pos):
        return named_pairs(index, pos, pos, np.empty(0, np.float32), "semantic"), empty
    labels, centroid_sim = kmeans_labels(vectors, cluster_count(len(pos), config), config)
    a, b, sim = within_cluster_pairs(vectors, labels, config.stored_from - 1e-6, config.max_neighbours)
    distances = pl.DataFrame({col.SAMPLE_ID: index.names(pos),
                              CENTROID_DISTANCE: pl.Series(1.0 - centroid_sim, dtype=pl.Float32)})
    return named_pairs(index, pos[a], pos[b], np.minimum(sim, 1.0), "semantic"), distances


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
