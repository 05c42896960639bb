"""The keep policy over counted pairs: which samples survive, and which survivor each dropped one duplicates.

Exact links are equivalences, and the pairs table stores them as stars (``equal_key_pairs``: every
member paired with the group's smallest id; an oversized LSH bucket likewise pairs identical
signatures with one leader). A policy that walks direct links only lets a star's leaves through as
soon as its centre is dropped by another link. So the walk works on classes:

- an *image class* is a set of samples with identical bytes or pixels (the exact detectors). An
  image link (pHash, SSCD, ...) from any member is a link of the whole class, and a class keeps at
  most one member;
- a *caption class* is a set of samples whose caption signatures are identical (a MinHash pair at
  similarity 1). A caption link from any member is a link of the whole class, and a class keeps at
  most one member.

Caption links do not cross image classes (two rows with the same picture under different captions
are one picture, not one caption), and image links do not cross caption classes. That keeps the
greedy policy's point: a chain A~B~C where B shows A's picture under C's caption keeps A and C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from manifests import schema as col
from manifests.schema import DupKind

SHA256, PIXELS, MINHASH = "sha256", "pixel_hash", "minhash"  # detector names (dedup.config.DETECTORS)
EXACT, IMAGE, CAPTION = DupKind.EXACT, DupKind.IMAGE, DupKind.CAPTION
SAME_SIGNATURE = 1.0 - 1e-6  # MinHash similarity 1: every permutation agrees, i.e. identical signatures


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


@dataclass(frozen=True)
class Classes:
    """Per node: its image class, its byte class (sha256 only) and its caption class, each a root node."""

    image: np.ndarray
    sha256: np.ndarray
    caption: np.ndarray

    @classmethod
    def of(cls, n: int, a: np.ndarray, b: np.ndarray, detector: np.ndarray, kind: np.ndarray,
           similarity: np.ndarray) -> Classes:
        exact = kind == EXACT
        same_caption = (detector == MINHASH) & (similarity >= SAME_SIGNATURE)
        sha = detector == SHA256
        return cls(union_find(n, a[exact], b[exact]), union_find(n, a[sha], b[sha]),
                   union_find(n, a[same_caption], b[same_caption]))


def _adjacency(n: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return group_rows(np.concatenate([a, b]), np.concatenate([b, a]), n)


def keep_greedy(order: np.ndarray, classes: Classes, a: np.ndarray, b: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Survivor of each node, walking nodes best-ranked first (``order``).

    A node is kept unless its image class or caption class already keeps a sample, or an image link
    of its image class or a caption link of its caption class reaches a class that keeps one; then
    it duplicates the best-ranked of those kept samples.
    """
    n = len(order)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    image = (kind == IMAGE) | (kind == EXACT) | (kind == DupKind.SEMANTIC)  # semantic: a look-alike picture
    img_dst, img_ptr = _adjacency(n, classes.image[a[image]], classes.image[b[image]])
    cap = kind == CAPTION
    cap_dst, cap_ptr = _adjacency(n, classes.caption[a[cap]], classes.caption[b[cap]])
    # The walk is sequential, so it runs on Python lists: per node a few list reads, where numpy's
    # per-call overhead on arrays of a handful of entries cost ~20 us a node.
    image_of, caption_of, rank_of = classes.image.tolist(), classes.caption.tolist(), rank.tolist()
    img_dst, img_ptr, cap_dst, cap_ptr = img_dst.tolist(), img_ptr.tolist(), cap_dst.tolist(), cap_ptr.tolist()
    kept_image, kept_caption = [-1] * n, [-1] * n  # per image / caption class root: the sample it keeps
    survivor = [-1] * n
    for v in order.tolist():
        ic, cc = image_of[v], caption_of[v]
        best, best_rank = -1, n  # the best-ranked kept sample reached (ranks are distinct)
        for k in (kept_image[ic], kept_caption[cc], *[kept_image[c] for c in img_dst[img_ptr[ic]:img_ptr[ic + 1]]],
                  *[kept_caption[c] for c in cap_dst[cap_ptr[cc]:cap_ptr[cc + 1]]]):
            if k >= 0 and rank_of[k] < best_rank:
                best, best_rank = k, rank_of[k]
        if best >= 0:
            survivor[v] = best
        else:
            survivor[v] = kept_image[ic] = kept_caption[cc] = v
    return np.array(survivor, dtype=np.int64)


def keep_per_component(order: np.ndarray, component: np.ndarray) -> np.ndarray:
    """Survivor of each node: the best-ranked node of its connected component (``component``: root per node)."""
    roots, first = np.unique(component[order], return_index=True)
    best = np.full(len(order), -1, np.int64)
    best[roots] = order[first]
    return best[component]


def check_keep_invariant(pairs: pl.DataFrame, thresholds: dict[str, float], kept: pl.Series,
                         rows: pl.DataFrame | None = None, keys: tuple[str, ...] = (col.SHA256, col.PIXEL_HASH),
                         limit: int = 20) -> list[str]:
    """Violations of the keep invariant (empty when it holds), at most ``limit`` of them.

    ``kept``: the sample_ids kept (by dedup, or by the whole decision: any subset of a valid kept
    set is valid). No two of them may be a stored pair at or above its detector's threshold, and, when
    ``rows`` (sample_id + ``keys`` columns) is given, no two may share a non-null value of a key.
    """
    kept = kept.unique()
    limit_of = pl.col("detector").replace_strict(thresholds, default=None, return_dtype=pl.Float64)
    linked = pairs.filter(pl.col("sample_a").is_in(kept.implode()) & pl.col("sample_b").is_in(kept.implode())
                          & (pl.col("similarity").cast(pl.Float64) >= limit_of - 1e-6))
    problems = [f"kept {a} and {b} are a {d} pair at similarity {s:.4g}"
                for a, b, d, s in linked.select("sample_a", "sample_b", "detector", "similarity")
                .head(limit).iter_rows()]
    for key in keys if rows is not None else ():
        if key not in rows.columns:
            continue
        shared = (rows.filter(pl.col(col.SAMPLE_ID).is_in(kept.implode())).drop_nulls(key).group_by(key)
                  .agg(pl.col(col.SAMPLE_ID).sort()).filter(pl.col(col.SAMPLE_ID).list.len() > 1))
        problems += [f"kept {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''} share {key} {value}"
                     for value, ids in shared.sort(key).head(limit).iter_rows()]
    return problems[:limit]
