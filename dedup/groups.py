"""Survivors per group of whole components: pairs and keep-policy scores routed to their cluster's
group, then ``dedup.cluster.cluster`` on each group. Pure: files in, files out, no Ray.

The keep policy only ever looks at a sample's own component (component mode: its best member; greedy
mode: its already-kept neighbours, walked best first), so running ``cluster`` on any set of whole
components gives those components exactly the rows it gives them on all pairs at once; a group is a
hash bucket of cluster_id, so it always holds whole components.
"""

from __future__ import annotations

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


def route_pairs(pairs: Path, labels: Path, bucket: int, groups: int, out: Path) -> int:
    """Join task: counted pairs of this sample_a bucket + their cluster_id -> the cluster's group."""
    joined = (scan_bucket(pairs, bucket, PAIRS_SCHEMA)
              .join(scan_bucket(labels, bucket, LABEL_SCHEMA), left_on=SAMPLE_A, right_on=col.SAMPLE_ID)
              .collect(engine="streaming"))
    return write_buckets(joined, pl.col(col.CLUSTER_ID), groups, out, f"{bucket:05d}")


def route_members(labels: Path, scores: Path, bucket: int, columns: dict[str, dict[str, pl.DataType]],
                  groups: int, out: Path) -> int:
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
    frame = members.collect(engine="streaming")
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
