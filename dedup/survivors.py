"""Survivors for a decision: manifest rows + stored pairs -> the duplicate columns, with no descriptor.

A cluster's survivor is picked among the rows that pass every other rule. So whenever a rule
changes (the decide phase of a rerun, ``thresher tune``, ``thresher reexport RUN --set``), the
clusters are redone from the stored pairs with the new eligibility; re-applying the stored duplicate
columns instead would lose a whole cluster whenever the new rule rejects its survivor. ``duplicates``
is that step in one process (``dedup/pairs.parquet`` of a run made before the one engine, and the
reference engine; ``join_duplicates`` joins its result back); partitioned pairs go through
``dedup.partitioned.recluster_partitioned`` instead, with the same ``cluster()`` per group
(``pipelines.run.repick`` picks the path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import polars as pl

from dedup.cluster import DETECTOR, RESOLUTION, SAMPLE_A, SAMPLE_B, cluster
from dedup.config import DETECTORS, DedupConfig
from manifests import schema as col
from manifests.layout import RunLayout

ELIGIBLE = "eligible"  # passes every rule but dedup
CENTROIDS_FILE = "semantic_centroids.parquet"  # beside dedup/pairs.parquet: sample_id, centroid_distance
CENTROIDS_DIR = "semantic_centroids"  # the partitioned run's part files of the same, one per score file
DUP_COLUMNS = (col.CLUSTER_ID, col.DUPLICATE_OF, col.DUP_KIND, col.DUP_SIMILARITY, col.DUP_DETECTOR)
# frame without duplicate columns -> sample_id + ``keep``, as the decision would set it.
Eligibility = Callable[[pl.LazyFrame], pl.LazyFrame]


def stored_pairs(files: list[Path], config: DedupConfig) -> pl.DataFrame | None:
    """The run's stored pairs (``RunLayout.pairs_files()``: one file or the partitioned parts), less those of
    detectors ``config`` turns off; None when the run stored none."""
    if not files:
        return None
    off = sorted(switched_off(config))
    return pl.scan_parquet([str(f) for f in files]).filter(~pl.col(DETECTOR).is_in(off)).collect()


def switched_off(config: DedupConfig) -> set[str]:
    """Detectors ``config`` does not enable (``dedup.config.DETECTORS`` lists them all)."""
    return {d.name for d in DETECTORS} - set(config.enabled_detectors())


def without_duplicates(frame: pl.LazyFrame) -> pl.LazyFrame:
    names = frame.collect_schema().names()
    return frame.drop([c for c in DUP_COLUMNS if c in names])


def join_duplicates(frame: pl.LazyFrame, duplicates: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """``frame`` (no duplicate columns) left-joined with a duplicates table under the manifest's names
    (``dup_detector`` only where the table has a detector column: tables of older runs have none)."""
    dups = duplicates.lazy()
    detector = [pl.col(DETECTOR).alias(col.DUP_DETECTOR)] if DETECTOR in dups.collect_schema().names() else []
    return frame.join(dups.select(col.SAMPLE_ID, col.CLUSTER_ID, col.DUPLICATE_OF, col.DUP_KIND,
                                  pl.col(col.SIMILARITY).alias(col.DUP_SIMILARITY), *detector),
                      on=col.SAMPLE_ID, how="left", maintain_order="left")


def keep_scores(frame: pl.LazyFrame, eligibility: Eligibility, order: tuple[str, ...]) -> pl.DataFrame:
    """sample_id, eligible and the keep-policy columns ``frame`` has (resolution: original pixels)."""
    names = set(frame.collect_schema().names())
    resolution = (pl.col(col.ORIGINAL_WIDTH).cast(pl.Int64) * pl.col(col.ORIGINAL_HEIGHT)).alias(RESOLUTION)
    present = [c for c in order if c in names and c != RESOLUTION]
    extra = [resolution] if RESOLUTION in order and {col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT} <= names else []
    eligible = eligibility(frame).select(col.SAMPLE_ID, pl.col(col.KEEP).alias(ELIGIBLE))
    return frame.select(col.SAMPLE_ID, *present, *extra).join(eligible, on=col.SAMPLE_ID, how="left").collect()


def keep_order(config: DedupConfig) -> tuple[str, ...]:
    """Eligible rows first; then, with semantic keep=least_prototypical, the farthest from their centroid."""
    semantic = (col.CENTROID_DISTANCE,) if config.semantic.enabled and config.semantic.keep == "least_prototypical" else ()
    return (ELIGIBLE, *semantic, *config.keep.order)


def centroid_files(centroids: Path) -> list[Path]:
    """The semantic centroid distances as either dedup path wrote them: ``centroids`` (the one-process
    file, ``dedup/semantic_centroids.parquet``), else the part files of ``dedup/semantic_centroids/``."""
    if centroids.exists():
        return [centroids]
    return sorted(centroids.with_name(CENTROIDS_DIR).glob("*.parquet"))


def with_centroid_distance(frame: pl.LazyFrame, centroids: Path, config: DedupConfig) -> pl.LazyFrame:
    """``frame`` with the semantic detector's ``centroid_distance`` joined in when the keep order ranks by it."""
    files = centroid_files(centroids)
    if col.CENTROID_DISTANCE not in keep_order(config) or not files:
        return frame
    return frame.join(pl.scan_parquet([str(f) for f in files]), on=col.SAMPLE_ID, how="left",
                      maintain_order="left")


def duplicates(frame: pl.LazyFrame, pairs: pl.DataFrame, config: DedupConfig, eligibility: Eligibility) -> pl.DataFrame:
    """The duplicates table of ``pairs`` under ``config``'s thresholds, survivors ranked eligible first."""
    order = keep_order(config)
    paired = pl.concat([pairs[SAMPLE_A], pairs[SAMPLE_B]]).unique()  # only they are ranked: memory ~ pairs
    scores = keep_scores(without_duplicates(frame).filter(pl.col(col.SAMPLE_ID).is_in(paired.implode())),
                         eligibility, order)
    return cluster(pairs, config.thresholds(), scores, order, config.keep.mode)


def eligible_path(layout: RunLayout) -> Path:
    return layout.dedup_eligible


def centroid_path(layout: RunLayout) -> Path:
    """sample_id + centroid_distance from the semantic detector's k-means (the least_prototypical keep)."""
    return layout.pairs.with_name(CENTROIDS_FILE)


def centroid_dir(layout: RunLayout) -> Path:
    """The same as part files (one per score file), written by the partitioned semantic finder."""
    return layout.pairs.with_name(CENTROIDS_DIR)
