"""Connected components over partitioned pairs: large-star / small-star rounds of bucketed edge files.

No process holds the graph. Edges are stored in both directions, bucketed by their first node, so a
bucket task sees every neighbour of its nodes. Each round (Kiveris et al., "Connected Components in
MapReduce and Beyond", SoCC 2014) is two tasks per bucket:

- large-star: node u links every larger neighbour to m(u), the smallest of u and its neighbours;
- small-star: node u links itself and every smaller neighbour to the smallest of them.

Both keep the components and shrink each towards a star around its smallest node; when a round
changes nothing (the same edge set, by count and a hash sum each task reports) every node's smallest
neighbour-or-self is its component's smallest sample_id: the label that routes a component to one
group task (``dedup.groups``); the duplicates' cluster_id is the survivor, which ``cluster()`` picks.
The number of rounds grows like log^2 of the component size, not with the run.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from dedup.cluster import SAMPLE_A, SAMPLE_B, _threshold_edges
from dedup.shuffle import concat, scan_bucket, write_bucket, write_buckets
from manifests import schema as col

EDGE_SCHEMA = {"u": pl.String, "v": pl.String}
LABEL_SCHEMA = {col.SAMPLE_ID: pl.String, col.CLUSTER_ID: pl.String}
_FINGERPRINT_SEED = 0xC0FFEE


def seed_edges(pair_files: list[Path], thresholds: dict[str, float], buckets: int, edges_out: Path,
               pairs_out: Path, part: str) -> int:
    """Map task: the counted pairs of a batch of pair files (similarity >= the detector's threshold) ->
    edges in both directions bucketed by their first node, and the pairs bucketed by sample_a."""
    counted = concat(_threshold_edges(pl.read_parquet(f), thresholds) for f in pair_files)
    if counted.is_empty():
        return 0
    both = pl.concat([counted.select(pl.col(SAMPLE_A).alias("u"), pl.col(SAMPLE_B).alias("v")),
                      counted.select(pl.col(SAMPLE_B).alias("u"), pl.col(SAMPLE_A).alias("v"))])
    write_buckets(both, pl.col("u"), buckets, edges_out, part)
    return write_buckets(counted, pl.col(SAMPLE_A), buckets, pairs_out, part)


def _edges(source: Path, bucket: int) -> tuple[pl.DataFrame, tuple[int, int]]:
    edges = scan_bucket(source, bucket, EDGE_SCHEMA).unique().collect(engine="streaming")
    # Sum of 32-bit halves of a row hash: order-free, and it cannot overflow a u64 for 2^32 rows.
    total = edges.select((pl.struct("u", "v").hash(_FINGERPRINT_SEED) // (1 << 32)).sum()).item() if edges.height else 0
    return edges, (edges.height, int(total or 0))


def _emit(links: pl.DataFrame, buckets: int, out: Path, part: str) -> None:
    """Undirected links (x, y) -> both directions, bucketed by the first node."""
    both = pl.concat([links.select(pl.col("x").alias("u"), pl.col("y").alias("v")),
                      links.select(pl.col("y").alias("u"), pl.col("x").alias("v"))])
    write_buckets(both.unique(), pl.col("u"), buckets, out, part)


def large_star(source: Path, bucket: int, buckets: int, out: Path) -> tuple[int, int]:
    """Returns the fingerprint of the edges it read (the previous round's result)."""
    edges, fingerprint = _edges(source, bucket)
    smallest = edges.group_by("u").agg(pl.col("v").min().alias("m"))
    smallest = smallest.with_columns(pl.when(pl.col("m") < pl.col("u")).then(pl.col("m")).otherwise(pl.col("u"))
                                     .alias("m"))
    links = (edges.join(smallest, on="u").filter(pl.col("v") > pl.col("u"))
             .select(pl.col("v").alias("x"), pl.col("m").alias("y")))
    _emit(links, buckets, out, f"{bucket:05d}")
    return fingerprint


def small_star(source: Path, bucket: int, buckets: int, out: Path) -> tuple[int, int]:
    edges, fingerprint = _edges(source, bucket)
    smaller = edges.filter(pl.col("v") < pl.col("u"))
    smallest = smaller.group_by("u").agg(pl.col("v").min().alias("m"))
    links = pl.concat([
        smaller.join(smallest, on="u").filter(pl.col("v") != pl.col("m")).select(pl.col("v").alias("x"),
                                                                                  pl.col("m").alias("y")),
        smallest.select(pl.col("u").alias("x"), pl.col("m").alias("y")),
    ])
    _emit(links, buckets, out, f"{bucket:05d}")
    return fingerprint


def labels(source: Path, bucket: int, out: Path) -> int:
    """After the last round: each node's cluster_id (its smallest neighbour or itself), same bucket."""
    edges = scan_bucket(source, bucket, EDGE_SCHEMA).collect(engine="streaming")
    if edges.is_empty():
        return 0
    smallest = edges.group_by("u").agg(pl.col("v").min())
    frame = smallest.select(pl.col("u").alias(col.SAMPLE_ID),
                            pl.when(pl.col("v") < pl.col("u")).then(pl.col("v")).otherwise(pl.col("u"))
                            .alias(col.CLUSTER_ID))
    return write_bucket(frame, bucket, out, f"{bucket:05d}")  # a node's label stays in its node's bucket


def converged(previous: list[tuple[int, int]] | None, current: list[tuple[int, int]]) -> bool:
    """Per-bucket fingerprints of two successive rounds' edges (same buckets, same order) are equal."""
    return previous is not None and previous == current
