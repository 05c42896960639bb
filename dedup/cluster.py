"""Duplicate pairs -> survivors by the keep policy -> a row per clustered sample, cluster_id its survivor. Pure.

``cluster(pairs, thresholds, scores)`` is all the decision needs, so a threshold or keep policy can be
changed and the clusters recomputed from ``dedup/pairs.parquet`` without touching a descriptor.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from dedup.artefacts import SampleIndex
from dedup.config import KIND_OF_DETECTOR
from dedup.keep import PIXELS, SHA256, Classes, group_rows, keep_greedy, keep_per_component, union_find
from manifests import schema as col
from manifests.schema import DupKind

__all__ = ["cluster", "cluster_nodes", "cluster_counts", "group_rows", "union_find", "with_kind"]

# Pair table columns (dedup/pairs.parquet).
SAMPLE_A, SAMPLE_B, DETECTOR = "sample_a", "sample_b", "detector"
KEPT_SAMPLE_ID, SIMILARITY = col.KEPT_SAMPLE_ID, col.SIMILARITY
RESOLUTION = "resolution"
# A dropped sample is explained by its strongest link: identical beats same picture beats same caption.
_KIND_RANK = {DupKind.EXACT: 0, DupKind.IMAGE: 1, DupKind.CAPTION: 2, DupKind.SEMANTIC: 3}

PAIRS_SCHEMA = {SAMPLE_A: pl.String, SAMPLE_B: pl.String, DETECTOR: pl.String, col.DUP_KIND: pl.String,
                SIMILARITY: pl.Float32}
DUPLICATES_SCHEMA = {col.SAMPLE_ID: pl.String, col.CLUSTER_ID: pl.String, KEPT_SAMPLE_ID: pl.String,
                     col.DUPLICATE_OF: pl.String, col.DUP_KIND: pl.String, SIMILARITY: pl.Float32,
                     DETECTOR: pl.String}


def with_kind(pairs: pl.DataFrame) -> pl.DataFrame:
    kinds = pl.col(DETECTOR).replace_strict(KIND_OF_DETECTOR, return_dtype=pl.String)
    return pairs.with_columns(kinds.alias(col.DUP_KIND))


def found_pairs(found: pl.DataFrame, detector: str) -> pl.DataFrame:
    """A bucket task's (a, b, similarity) sample_id rows -> pairs of ``detector`` under the pairs table's names."""
    return with_kind(found.select(pl.col("a").alias(SAMPLE_A), pl.col("b").alias(SAMPLE_B),
                                  pl.lit(detector).alias(DETECTOR), pl.col(SIMILARITY).cast(pl.Float32)))


def named_pairs(index: SampleIndex, a: np.ndarray, b: np.ndarray, sim: np.ndarray, detector: str) -> pl.DataFrame:
    """Positions in the sorted run index -> the pairs table (a < b by position is a < b by sample_id)."""
    frame = pl.DataFrame({SAMPLE_A: index.names(a), SAMPLE_B: index.names(b),
                          DETECTOR: pl.Series([detector] * len(a), dtype=pl.String),
                          SIMILARITY: pl.Series(sim, dtype=pl.Float32)})
    return with_kind(frame).select(list(PAIRS_SCHEMA))


def equal_key_pairs(frame: pl.LazyFrame, key: str, detector: str) -> pl.DataFrame:
    """Samples sharing a non-null ``key``: each paired with the group's smallest sample_id (similarity 1)."""
    groups = (frame.select(col.SAMPLE_ID, key).drop_nulls().group_by(key).agg(pl.col(col.SAMPLE_ID).sort())
              .filter(pl.col(col.SAMPLE_ID).list.len() > 1))
    pairs = groups.select(pl.col(col.SAMPLE_ID).list.first().alias(SAMPLE_A),
                          pl.col(col.SAMPLE_ID).list.slice(1).alias(SAMPLE_B)).explode(SAMPLE_B)
    out = pairs.with_columns(pl.lit(detector).alias(DETECTOR), pl.lit(1.0, pl.Float32).alias(SIMILARITY)).collect()
    return with_kind(out).select(list(PAIRS_SCHEMA))


def _threshold_edges(pairs: pl.DataFrame, thresholds: dict[str, float]) -> pl.DataFrame:
    unknown = set(pairs[DETECTOR].unique().to_list()) - set(thresholds)
    if unknown:
        raise ValueError(f"no threshold for detectors {sorted(unknown)}; thresholds has {sorted(thresholds)}")
    limit = pl.col(DETECTOR).replace_strict(thresholds, return_dtype=pl.Float64)
    return pairs.filter(pl.col(SIMILARITY).cast(pl.Float64) >= limit - 1e-6)


def _ranked(nodes: pl.DataFrame, scores: pl.DataFrame | None, order: tuple[str, ...]) -> np.ndarray:
    """Nodes best first by the keep policy: highest of each ``order`` column present (nulls and NaN
    last), then smallest sample_id."""
    present = [c for c in order if scores is not None and c in scores.columns]
    ranked = nodes
    if present:
        values = scores.select(col.SAMPLE_ID, *[pl.col(c).fill_nan(None) if scores.schema[c].is_float() else pl.col(c)
                                                for c in present])
        ranked = nodes.join(values, on=col.SAMPLE_ID, how="left")
    ranked = ranked.sort([*present, col.SAMPLE_ID], descending=[True] * len(present) + [False], nulls_last=True)
    return ranked["node"].to_numpy()


def _best(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """The strongest link per ``by``: identical before same picture before same caption, then similarity."""
    ranked = frame.sort([*by, "rank", SIMILARITY, DETECTOR], descending=[False] * len(by) + [False, True, False])
    return ranked.filter(pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in by]))  # each first


def _explain(dropped: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """node -> (dup_kind, similarity, detector) of the link that makes it a duplicate of its survivor.

    ``dropped``: node, survivor and the image (iv, it), caption (cv, ct) and byte classes of both;
    ``edges``: both directions of every counted pair, with the endpoints' classes. A direct link
    to the survivor or a link between their classes explains it; a sample with neither (possible
    in component mode only) gets its strongest link.
    """
    out = [DETECTOR, col.DUP_KIND, SIMILARITY, "rank"]
    images = _best(edges.filter((pl.col(col.DUP_KIND) != "caption") & (pl.col("ix") != pl.col("iy"))), ["ix", "iy"])
    captions = _best(edges.filter((pl.col(col.DUP_KIND) == "caption") & (pl.col("cx") != pl.col("cy"))), ["cx", "cy"])
    same_image = dropped.filter(pl.col("iv") == pl.col("it")).with_columns(
        pl.when(pl.col("same_bytes")).then(pl.lit(SHA256)).otherwise(pl.lit(PIXELS)).alias(DETECTOR),
        pl.lit("exact").alias(col.DUP_KIND))
    same_caption = dropped.filter(pl.col("cv") == pl.col("ct")).with_columns(
        pl.lit("minhash").alias(DETECTOR), pl.lit("caption").alias(col.DUP_KIND))
    found = pl.concat([
        dropped.join(edges.filter(pl.col(col.DUP_KIND) != "exact"), left_on=["node", "survivor"], right_on=["x", "y"])
        .select("node", *out),  # exact links are the same-image rows below, which know bytes from pixels
        dropped.join(images, left_on=["iv", "it"], right_on=["ix", "iy"]).select("node", *out),
        dropped.join(captions, left_on=["cv", "ct"], right_on=["cx", "cy"]).select("node", *out),
        *[f.with_columns(pl.lit(1.0, pl.Float32).alias(SIMILARITY), _kind_rank()).select("node", *out)
          for f in (same_image, same_caption)],
    ])
    missing = dropped.join(found, on="node", how="anti").join(edges, left_on="node", right_on="x")
    return _best(pl.concat([found, missing.select("node", *out)]), ["node"]).select("node", *out[:3])


def _kind_rank() -> pl.Expr:
    return pl.col(col.DUP_KIND).replace_strict(_KIND_RANK, return_dtype=pl.Int8).alias("rank")


def _both_ways(edges: pl.DataFrame, a: np.ndarray, b: np.ndarray, classes: Classes) -> pl.DataFrame:
    def side(x: np.ndarray, y: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({"x": x, "y": y, "ix": classes.image[x], "iy": classes.image[y],
                             "cx": classes.caption[x], "cy": classes.caption[y]})
    info = edges.select(DETECTOR, col.DUP_KIND, SIMILARITY, _kind_rank())
    return pl.concat([pl.concat([side(a, b), info], how="horizontal"), pl.concat([side(b, a), info], how="horizontal")])


def cluster(pairs: pl.DataFrame, thresholds: dict[str, float], scores: pl.DataFrame | None = None,
            order: tuple[str, ...] = (col.AESTHETIC_SCORE, col.CLIP_SCORE, RESOLUTION),
            mode: Literal["greedy", "component"] = "greedy") -> pl.DataFrame:
    """Pairs (sample_a, sample_b, detector, similarity) -> one row per sample in a cluster of two or more.

    A pair counts when its similarity reaches ``thresholds[detector]``. Every sample of a counted pair
    gets a row. ``mode`` picks the kept samples among the connected components of those pairs:
    "component" keeps exactly one per component (the best by ``order``); "greedy" (default)
    walks the samples best first and keeps each one with no link to a kept sample, exact groups and
    identical captions counting as one (``dedup.keep``). A dropped sample's duplicate_of (=
    kept_sample_id) is its survivor, with the kind, similarity and detector of the link to it; a kept
    sample has duplicate_of null and kept_sample_id itself. cluster_id is the survivor's group: the
    kept_sample_id, so a chain A~B~C~D of distinct pictures where greedy keeps A and C is two clusters,
    {A, B} and {C, D}, not one component (in component mode the two coincide). However the pairs are
    laid out (stars, chains, cliques), no two kept samples share an exact group or are a counted pair.
    """
    edges = with_kind(_threshold_edges(pairs, thresholds))
    if edges.is_empty():
        return pl.DataFrame(schema=DUPLICATES_SCHEMA)
    ids = pl.concat([edges[SAMPLE_A], edges[SAMPLE_B]]).unique().sort()
    a = ids.search_sorted(edges[SAMPLE_A]).to_numpy()
    b = ids.search_sorted(edges[SAMPLE_B]).to_numpy()
    best_first = _ranked(pl.DataFrame({col.SAMPLE_ID: ids, "node": np.arange(len(ids))}), scores, order)
    survivor, why = cluster_nodes(a, b, edges, best_first, mode)
    out = pl.DataFrame({col.SAMPLE_ID: ids, col.CLUSTER_ID: ids.gather(survivor), KEPT_SAMPLE_ID: ids.gather(survivor),
                        "node": np.arange(len(ids))}).join(why, on="node", how="left")
    dropped = pl.col(col.SAMPLE_ID) != pl.col(KEPT_SAMPLE_ID)
    out = out.with_columns(pl.when(dropped).then(pl.col(KEPT_SAMPLE_ID)).alias(col.DUPLICATE_OF))
    return out.select(list(DUPLICATES_SCHEMA)).cast(DUPLICATES_SCHEMA).sort(col.SAMPLE_ID)


def cluster_nodes(a: np.ndarray, b: np.ndarray, links: pl.DataFrame, best_first: np.ndarray,
                  mode: Literal["greedy", "component"] = "greedy") -> tuple[np.ndarray, pl.DataFrame]:
    """``cluster`` over nodes 0..n-1 (n = ``len(best_first)``, each in a counted pair): pairs (``a``, ``b``)
    with their ``links`` (detector, dup_kind, similarity), nodes ranked ``best_first`` -> each node's survivor,
    and per dropped node the link that makes it a duplicate (node, detector, dup_kind, similarity)."""
    n = len(best_first)
    kind, detector = links[col.DUP_KIND].to_numpy(), links[DETECTOR].to_numpy()
    classes = Classes.of(n, a, b, detector, kind, links[SIMILARITY].to_numpy())
    survivor = (keep_greedy(best_first, classes, a, b, kind) if mode == "greedy"
                else keep_per_component(best_first, union_find(n, a, b)))
    nodes = pl.DataFrame({"node": np.arange(n), "survivor": survivor,
                          "iv": classes.image, "it": classes.image[survivor],
                          "cv": classes.caption, "ct": classes.caption[survivor],
                          "same_bytes": classes.sha256 == classes.sha256[survivor]})
    return survivor, _explain(nodes.filter(pl.col("node") != pl.col("survivor")), _both_ways(links, a, b, classes))


def cluster_counts(duplicates: pl.DataFrame) -> dict:
    """run.json's counts of a duplicates table: ``clusters``, the survivor groups with at least one
    dropped member (a kept sample whose every link leads to another group's dropped sample has a row
    but is no cluster); ``kept_in_clusters``, the kept rows; ``duplicates``, the dropped rows."""
    dropped = duplicates.filter(pl.col(col.DUPLICATE_OF).is_not_null())
    return {"clusters": dropped[KEPT_SAMPLE_ID].n_unique(), "kept_in_clusters": duplicates.height - dropped.height,
            "duplicates": dropped.height,
            "by_kind": dict(dropped.group_by(col.DUP_KIND).len().sort(col.DUP_KIND).iter_rows())}
