"""Survivors per group of whole components: pairs and keep-policy scores routed to their cluster's
group, then ``dedup.cluster.cluster`` on each group. Pure: files in, files out, no Ray.

The keep policy only ever looks at a sample's own component (component mode: its best member; greedy
mode: its already-kept neighbours, walked best first), so running ``cluster`` on any set of whole
components gives those components exactly the rows it gives them on all pairs at once; a group is a
hash bucket of the component label, so it always holds whole components. A component of more than
``dedup.partitions.max_component_rows`` members goes to ``dedup.giant`` instead (``Giant``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow.parquet as pq

from dedup.cluster import PAIRS_SCHEMA, SAMPLE_A, cluster, cluster_counts
from dedup.components import LABEL_SCHEMA
from dedup.shuffle import concat, scan_bucket, write_buckets
from manifests import schema as col
from manifests.schema import Status
from manifests.io import write_parquet

RESOLUTION_SOURCE, ELIGIBLE_SOURCE, SCORES_SOURCE = "rows", "eligible", "scores"
CENTROIDS_SOURCE = "centroids"  # the semantic finder's centroid_distance (keep: least_prototypical)
UNIT = "unit"  # the ingest unit (staged file stem) a sample came from


def shuffle_scores(sources: list[Path], kind: str, columns: list[str], buckets: int, out: Path, part: str) -> int:
    """Map task: sample_id + the keep-policy ``columns`` each file of a batch has, bucketed by sample_id
    (a column one file of the batch lacks is null in its rows, as the reader of a bucket takes it).

    ``kind`` rows: staged ingest rows (successes, resolution = width x height, and ``unit``, the file's
    name, so each duplicates row can be sent back to its sample's unit); eligible, scores, centroids:
    as written.
    """
    frame = concat(_score_rows(source, kind, columns) for source in sources)
    return write_buckets(frame, pl.col(col.SAMPLE_ID), buckets, out / kind, part)


def _score_rows(source: Path, kind: str, columns: list[str]) -> pl.DataFrame:
    frame = pl.scan_parquet(source)
    if kind == RESOLUTION_SOURCE:
        frame = frame.filter(pl.col(col.STATUS) == Status.SUCCESS).select(
            col.SAMPLE_ID, (pl.col(col.ORIGINAL_WIDTH).cast(pl.Int64) * pl.col(col.ORIGINAL_HEIGHT)).alias("resolution"),
            pl.lit(source.stem).alias(UNIT))
    else:
        present = set(pq.ParquetFile(source).schema_arrow.names)
        frame = frame.select(col.SAMPLE_ID, *[c for c in columns if c in present])
    return frame.collect(engine="streaming")


def route_pairs(pairs: Path, labels: Path, bucket: int, groups: int, out: Path, giant: Giant | None = None) -> int:
    """Join task: counted pairs of this sample_a bucket + their cluster_id -> the cluster's group (a giant
    component's pairs: to ``giant.pairs``, by sample_a)."""
    joined = (scan_bucket(pairs, bucket, PAIRS_SCHEMA)
              .join(scan_bucket(labels, bucket, LABEL_SCHEMA), left_on=SAMPLE_A, right_on=col.SAMPLE_ID)
              .collect(engine="streaming"))
    joined, big = _split(joined, giant)
    if giant is not None:
        write_buckets(big.drop(col.CLUSTER_ID), pl.col(SAMPLE_A), giant.buckets, giant.pairs, f"{bucket:05d}")
    return write_buckets(joined, pl.col(col.CLUSTER_ID), groups, out, f"{bucket:05d}")


@dataclass(frozen=True)
class Giant:
    """Components over ``dedup.partitions.max_component_rows``: their labels, and where their members
    and pairs go instead of a group (``buckets`` buckets by sample_id, for ``dedup.giant``)."""
    labels: tuple[str, ...]
    buckets: int
    members: Path
    pairs: Path


def _split(frame: pl.DataFrame, giant: Giant | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    if giant is None:
        return frame, frame.clear()
    big = pl.col(col.CLUSTER_ID).is_in(pl.Series(giant.labels, dtype=pl.String).implode())
    return frame.filter(~big), frame.filter(big)


def component_sizes(labels: Path, bucket: int, buckets: int, out: Path) -> int:
    """Map task: this bucket's members per component label -> by label."""
    sizes = scan_bucket(labels, bucket, LABEL_SCHEMA).group_by(col.CLUSTER_ID).len().collect()
    return write_buckets(sizes, pl.col(col.CLUSTER_ID), buckets, out, f"{bucket:05d}")


def large_components(sizes: Path, bucket: int, cap: int) -> dict[str, int]:
    """Reduce task: the components of this bucket with more than ``cap`` members -> {label: members}."""
    total = (scan_bucket(sizes, bucket, {col.CLUSTER_ID: pl.String, "len": pl.UInt32})
             .group_by(col.CLUSTER_ID).agg(pl.col("len").sum()).filter(pl.col("len") > cap).collect())
    return dict(total.iter_rows())


def route_members(labels: Path, scores: Path, bucket: int, columns: dict[str, dict[str, pl.DataType]],
                  groups: int, out: Path, giant: Giant | None = None) -> int:
    """Join task: the clustered samples of this bucket + every keep-policy column (null where a
    sample has none) -> their cluster's group. ``columns``: source kind -> {column: dtype}, the same
    for every bucket, so a group's parts share one schema."""
    members = scan_bucket(labels, bucket, LABEL_SCHEMA)
    for kind, types in columns.items():
        part = scan_bucket(scores / kind, bucket, {col.SAMPLE_ID: pl.String, **types})
        have = part.collect_schema().names()
        part = part.select(col.SAMPLE_ID, *[(pl.col(n) if n in have else pl.lit(None)).cast(t).alias(n)
                                            for n, t in types.items()])
        members = members.join(part, on=col.SAMPLE_ID, how="left")
    frame, big = _split(members.collect(engine="streaming"), giant)
    if giant is not None:
        write_buckets(big.drop(col.CLUSTER_ID), pl.col(col.SAMPLE_ID), giant.buckets, giant.members, f"{bucket:05d}")
    return write_buckets(frame, pl.col(col.CLUSTER_ID), groups, out, f"{bucket:05d}")


def keep_group(pairs: Path, members: Path, group: int, thresholds: dict[str, float], order: tuple[str, ...],
               mode: Literal["greedy", "component"], out: Path) -> dict:
    """Reduce task: ``cluster`` on one group's pairs and member scores -> its duplicates rows, written
    per ingest unit of the sample (``out/<unit>/part-<group>.parquet``): the decision of a unit then
    reads only its own rows' duplicates."""
    frame = scan_bucket(pairs, group, {**PAIRS_SCHEMA, col.CLUSTER_ID: pl.String}).collect()
    scores = scan_bucket(members, group, LABEL_SCHEMA).collect().drop(col.CLUSTER_ID)
    # An empty group still writes its (empty) part: readers always find the table's columns.
    duplicates = cluster(frame.drop(col.CLUSTER_ID), thresholds, scores, order, mode)
    units = scores.select(col.SAMPLE_ID, pl.col(UNIT).fill_null("_")) if UNIT in scores.columns else \
        scores.select(col.SAMPLE_ID, pl.lit("_").alias(UNIT))
    routed = duplicates.join(units, on=col.SAMPLE_ID, how="left")
    for (unit,), rows in routed.partition_by(UNIT, as_dict=True).items():
        write_parquet(rows.drop(UNIT).to_arrow(), out / str(unit) / f"part-{group:05d}.parquet")
    counts = cluster_counts(duplicates)  # a survivor group lies in one component, so in one group
    return {"rows": duplicates.height, "duplicates": counts["duplicates"], "clusters": counts["clusters"],
            "by_kind": counts["by_kind"]}
