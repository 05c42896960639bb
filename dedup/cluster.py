"""Duplicate pairs -> connected components (union-find) -> one kept sample per cluster. Pure: no I/O.

``cluster(pairs, thresholds, scores)`` is all the decision needs, so a threshold or keep policy can be
changed and the clusters recomputed from ``dedup/pairs.parquet`` without touching a descriptor.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from manifests import schema as col

# Pair table columns (dedup/pairs.parquet).
SAMPLE_A, SAMPLE_B, DETECTOR = "sample_a", "sample_b", "detector"
KEPT_SAMPLE_ID, SIMILARITY = col.KEPT_SAMPLE_ID, col.SIMILARITY
RESOLUTION = "resolution"
KIND_OF_DETECTOR = {"sha256": "exact", "pixels": "exact", "minhash": "caption", "phash": "image", "sscd": "image",
                    "semantic": "semantic"}
# A dropped sample is explained by its strongest link: identical beats same picture beats same caption.
_KIND_RANK = {"exact": 0, "image": 1, "caption": 2, "semantic": 3}

PAIRS_SCHEMA = {SAMPLE_A: pl.String, SAMPLE_B: pl.String, DETECTOR: pl.String, col.DUP_KIND: pl.String,
                SIMILARITY: pl.Float32}
DUPLICATES_SCHEMA = {col.SAMPLE_ID: pl.String, col.CLUSTER_ID: pl.String, KEPT_SAMPLE_ID: pl.String,
                     col.DUPLICATE_OF: pl.String, col.DUP_KIND: pl.String, SIMILARITY: pl.Float32}


def group_rows(keys: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` sorted by key (stable) and the offsets of keys 0..n-1 in that order (CSR): the rows of
    key k are ``sorted_rows[offsets[k]:offsets[k + 1]]``."""
    order = np.argsort(keys, kind="stable")
    return rows[order], np.searchsorted(keys[order], np.arange(n + 1))


def union_find(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root of each of ``n`` nodes joined by edges (a, b); a root is the smallest node of its component.

    Vectorised hook-and-compress: hook the larger root of every edge under the smaller, then jump
    pointers until each node points at its root; repeat until no edge joins two roots.
    """
    parent = np.arange(n, dtype=np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        differ = ra != rb
        if not differ.any():
            return parent
        np.minimum.at(parent, np.maximum(ra, rb)[differ], np.minimum(ra, rb)[differ])
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def with_kind(pairs: pl.DataFrame) -> pl.DataFrame:
    kinds = pl.col(DETECTOR).replace_strict(KIND_OF_DETECTOR, return_dtype=pl.String)
    return pairs.with_columns(kinds.alias(col.DUP_KIND))


def _threshold_edges(pairs: pl.DataFrame, thresholds: dict[str, float]) -> pl.DataFrame:
    unknown = set(pairs[DETECTOR].unique().to_list()) - set(thresholds)
    if unknown:
        raise ValueError(f"no threshold for detectors {sorted(unknown)}; thresholds has {sorted(thresholds)}")
    limit = pl.col(DETECTOR).replace_strict(thresholds, return_dtype=pl.Float64)
    return pairs.filter(pl.col(SIMILARITY).cast(pl.Float64) >= limit - 1e-6)


def _ranked(members: pl.DataFrame, scores: pl.DataFrame | None, order: tuple[str, ...]) -> pl.DataFrame:
    """members sorted by the keep policy: highest of each ``order`` column present (nulls last), then smallest id."""
    present = [c for c in order if scores is not None and c in scores.columns]
    ranked = members
    if present:
        ranked = members.join(scores.select(col.SAMPLE_ID, *present), on=col.SAMPLE_ID, how="left")
    ranked = ranked.sort([*present, col.SAMPLE_ID], descending=[True] * len(present) + [False], nulls_last=True)
    return ranked.select(col.SAMPLE_ID, col.CLUSTER_ID, "node")


def _kept_per_component(ranked: pl.DataFrame) -> pl.DataFrame:
    kept = ranked.group_by(col.CLUSTER_ID, maintain_order=True).agg(pl.col(col.SAMPLE_ID).first().alias(KEPT_SAMPLE_ID))
    return ranked.join(kept, on=col.CLUSTER_ID).select(col.SAMPLE_ID, KEPT_SAMPLE_ID)


def _kept_greedy(ranked: pl.DataFrame, n: int, a: np.ndarray, b: np.ndarray) -> pl.DataFrame:
    """Best-ranked first: keep a sample unless it links directly to a kept one; then it duplicates the
    best-ranked kept neighbour. No two kept samples are duplicates, and a chain A~B~C of distinct
    pictures (B: A's image under C's caption) keeps A and C instead of collapsing into one."""
    dst, indptr = group_rows(np.concatenate([a, b]), np.concatenate([b, a]), n)
    order = ranked["node"].to_numpy()
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    kept = np.zeros(n, dtype=bool)
    target = np.empty(n, np.int64)
    for v in order:
        neighbours = dst[indptr[v]:indptr[v + 1]]
        linked = neighbours[kept[neighbours]]
        if len(linked):
            target[v] = linked[np.argmin(rank[linked])]
        else:
            kept[v], target[v] = True, v
    ids = ranked.sort("node")[col.SAMPLE_ID]
    return pl.DataFrame({col.SAMPLE_ID: ids, KEPT_SAMPLE_ID: ids.gather(target)})


def _explain(members: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """For each dropped sample: kind and similarity of its direct link to the kept one, else its strongest."""
    both = pl.concat([
        edges.select(pl.col(SAMPLE_A).alias(col.SAMPLE_ID), pl.col(SAMPLE_B).alias("other"), col.DUP_KIND, SIMILARITY),
        edges.select(pl.col(SAMPLE_B).alias(col.SAMPLE_ID), pl.col(SAMPLE_A).alias("other"), col.DUP_KIND, SIMILARITY),
    ])
    both = both.join(members.select(col.SAMPLE_ID, KEPT_SAMPLE_ID), on=col.SAMPLE_ID).with_columns(
        (pl.col("other") != pl.col(KEPT_SAMPLE_ID)).alias("indirect"),
        pl.col(col.DUP_KIND).replace_strict(_KIND_RANK, return_dtype=pl.Int8).alias("rank"))
    best = both.sort([col.SAMPLE_ID, "indirect", "rank", SIMILARITY, "other"],
                     descending=[False, False, False, True, False])
    return best.group_by(col.SAMPLE_ID, maintain_order=True).first().select(col.SAMPLE_ID, col.DUP_KIND, SIMILARITY)


def cluster(pairs: pl.DataFrame, thresholds: dict[str, float], scores: pl.DataFrame | None = None,
            order: tuple[str, ...] = (col.AESTHETIC_SCORE, col.CLIP_SCORE, RESOLUTION),
            mode: Literal["greedy", "component"] = "greedy") -> pl.DataFrame:
    """Pairs (sample_a, sample_b, detector, similarity) -> one row per sample in a cluster of two or more.

    A pair counts when its similarity reaches ``thresholds[detector]``. Clusters are the connected
    components of those pairs; cluster_id is the smallest sample_id of the cluster. ``mode`` picks the
    kept samples: "component" keeps exactly one per cluster (the best by ``order``); "greedy" (default)
    walks the samples best first and keeps each one that has no direct link to a kept sample. A
    dropped sample's duplicate_of (= kept_sample_id) is the kept sample it is linked to (directly, in
    greedy mode); a kept sample has duplicate_of null and kept_sample_id itself.
    """
    edges = with_kind(_threshold_edges(pairs, thresholds))
    if edges.is_empty():
        return pl.DataFrame(schema=DUPLICATES_SCHEMA)
    ids = pl.concat([edges[SAMPLE_A], edges[SAMPLE_B]]).unique().sort()
    a = ids.search_sorted(edges[SAMPLE_A]).to_numpy()
    b = ids.search_sorted(edges[SAMPLE_B]).to_numpy()
    roots = union_find(len(ids), a, b)
    members = pl.DataFrame({col.SAMPLE_ID: ids, col.CLUSTER_ID: ids.gather(roots), "node": np.arange(len(ids))})
    ranked = _ranked(members, scores, order)
    kept = _kept_greedy(ranked, len(ids), a, b) if mode == "greedy" else _kept_per_component(ranked)
    members = members.join(kept, on=col.SAMPLE_ID)
    out = members.join(_explain(members, edges), on=col.SAMPLE_ID, how="left")
    dropped = pl.col(col.SAMPLE_ID) != pl.col(KEPT_SAMPLE_ID)
    out = out.with_columns(
        pl.when(dropped).then(pl.col(KEPT_SAMPLE_ID)).alias(col.DUPLICATE_OF),
        pl.when(dropped).then(pl.col(col.DUP_KIND)).alias(col.DUP_KIND),
        pl.when(dropped).then(pl.col(SIMILARITY)).cast(pl.Float32).alias(SIMILARITY))
    return out.select(list(DUPLICATES_SCHEMA)).cast(DUPLICATES_SCHEMA).sort(col.SAMPLE_ID)
