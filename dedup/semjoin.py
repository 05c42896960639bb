"""Semantic duplicates (SemDeDup) as partitioned work: k-means clusters as shuffle buckets. Pure: no Ray.

The same pairs as ``dedup.semantic.semantic_pairs`` finds in one process, cut by cluster:

1. a task per batch of score files (``Plan.batches``) draws its rows of the training sample
   (``semantic.in_sample``: a hash of the sample_id, so the sample depends on neither the files nor
   the batching); the driver orders the sample by sample_id and trains the spherical k-means on it,
   as the one-process path does;
2. a task per batch of score files assigns its rows to their nearest centroid, writes (cluster,
   sample_id, float16 vector) bucketed by cluster, and its rows' ``centroid_distance`` as one part
   file of ``dedup/semantic_centroids/`` (read by the ``least_prototypical`` keep policy);
3. a task per bucket of whole clusters runs the exact within-cluster search of ``semantic.bucket_pairs``
   on its rows in sample_id order, and writes its pairs.

Memory per task: one record batch and the drawn rows (sampling), one batch of score files of about
``partitions.bytes_per_map_task`` (assignment), then one bucket of clusters (``partitions.bytes_per_bucket``);
a single cluster larger than a bucket still lands whole in one task, as it does in one process.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.artefacts import binary_matrix
from dedup.cluster import DETECTOR, SAMPLE_A, SAMPLE_B, SIMILARITY, with_kind
from dedup.config import SemanticConfig
from dedup.semantic import (CENTROID_DISTANCE, assign, bucket_pairs, cluster_count, embedded, in_sample,
                            sample_share, train_centroids)
from dedup.shuffle import scan_bucket, write_buckets, write_pairs
from dedup.plan import Plan
from manifests import schema as col
from manifests.io import write_parquet


CLUSTER_SCHEMA = {"cluster": pl.Int64, col.SAMPLE_ID: pl.String, "vector": pl.Binary}
CENTROIDS_SCHEMA = {col.SAMPLE_ID: pl.String, CENTROID_DISTANCE: pl.Float32}
ROW_BYTES = 64  # a shuffled row beside its vector: ids, cluster, offsets


def semantic_pairs(plan: Plan, centroids_dir: Path) -> int:
    """Driver: sample, train, assign, join; pairs to ``dedup/pairs/semantic-NNNNN.parquet`` and centroid
    distances to ``centroids_dir``. Returns the pair count."""
    config, files = plan.config.semantic, plan.layout.score_files()
    rows = sum(plan.file_rows(f) for f in files)  # footers read once per plan
    drawn = plan.each(sample_embeddings, [(batch, sample_share(rows, config), config.seed)
                                          for batch in plan.batches(files, ROW_BYTES + stored_bytes(files))])
    centroids = train(drawn, rows, config)
    shutil.rmtree(centroids_dir, ignore_errors=True)
    if centroids is None:
        return 0
    dims = centroids.shape[1]
    row_bytes = ROW_BYTES + 2 * dims  # a row as shuffled: ids and its float16 vector
    clusters, buckets = plan.fresh("semantic-clusters"), plan.buckets(rows, row_bytes)
    plan.each(assign_clusters, [(batch, centroids, buckets, clusters, centroids_dir, f"{i:05d}")
                                for i, batch in enumerate(plan.batches(files, row_bytes))])
    return sum(plan.each(join_clusters, [(clusters, b, dims, config, plan.layout.pairs_dir)
                                         for b in range(buckets)]))


def stored_bytes(files: list[Path]) -> int:
    """Bytes per row of ``clip_embedding`` as the first score file holding it stores them (uncompressed,
    from its footer): what a sampling task reads per input row. 0 when no file has the column."""
    for f in files:
        meta = pq.ParquetFile(f).metadata
        chunks = [meta.row_group(g).column(c) for g in range(meta.num_row_groups) for c in range(meta.num_columns)]
        size = sum(c.total_uncompressed_size for c in chunks if c.path_in_schema.split(".")[0] == col.CLIP_EMBEDDING)
        if size:
            return math.ceil(size / max(1, meta.num_rows))
    return 0


def sample_embeddings(sources: list[Path], share: float, seed: int) -> tuple[pl.Series, np.ndarray]:
    """Task: (sample_ids, unit vectors) of a batch of score files' rows in the training sample, read one
    record batch at a time (the draw is per sample_id, so it does not depend on the batch)."""
    ids, parts = [], []
    for sample_ids, vectors in embedded(sources):
        drawn = in_sample(sample_ids, share, seed)
        ids.append(sample_ids.filter(pl.Series(drawn)))
        parts.append(vectors[drawn])
    if not parts:
        return pl.Series(col.SAMPLE_ID, [], dtype=pl.String), np.zeros((0, 0), np.float32)
    return pl.concat(ids), np.concatenate(parts)


def train(drawn: list[tuple[pl.Series, np.ndarray]], rows: int, config: SemanticConfig) -> np.ndarray | None:
    """Driver: (k, d) centroids from every file's sample in sample_id order (the one-process order);
    None when no row has an embedding."""
    drawn = [(ids, v) for ids, v in drawn if len(ids)]
    if not drawn:
        return None
    ids = pl.concat([i for i, _ in drawn])
    sample = np.concatenate([v for _, v in drawn])[ids.arg_sort().to_numpy()]
    return train_centroids(sample, min(cluster_count(rows, config), len(sample)), config)


def assign_clusters(sources: list[Path], centroids: np.ndarray, buckets: int, out: Path, centroids_dir: Path,
                    part: str) -> int:
    """Task: a batch of score files' rows -> (cluster, sample_id, float16 vector) bucketed by cluster, and
    their centroid distances as ``centroids_dir/<part>.parquet``. Returns the rows assigned."""
    frames, distances = [], []
    for ids, vectors in embedded(sources):
        labels, sims = assign(vectors, centroids)
        frames.append(pl.DataFrame({"cluster": labels, col.SAMPLE_ID: ids, "vector": _blobs(vectors)},
                                   schema=CLUSTER_SCHEMA))
        distances.append(pl.DataFrame({col.SAMPLE_ID: ids, CENTROID_DISTANCE: (1.0 - sims).astype(np.float32)},
                                      schema=CENTROIDS_SCHEMA))
    if not frames:
        return 0
    write_parquet(pl.concat(distances).sort(col.SAMPLE_ID).to_arrow(), centroids_dir / f"{part}.parquet")
    return write_buckets(pl.concat(frames), pl.col("cluster"), buckets, out, part)


def _blobs(vectors: np.ndarray) -> pl.Series:
    """(n, d) unit vectors -> a binary column of float16 rows (the one-process spill's precision)."""
    raw = np.ascontiguousarray(vectors.astype("<f2")).view(np.uint8).reshape(len(vectors), -1)
    fixed = pa.Array.from_buffers(pa.binary(raw.shape[1]), len(raw), [None, pa.py_buffer(raw.tobytes())])
    return pl.Series("vector", fixed.cast(pa.binary()))


def join_clusters(source: Path, bucket: int, dims: int, config: SemanticConfig, out: Path) -> int:
    """Task: the exact search inside each cluster of one bucket -> ``out/semantic-<bucket>.parquet``."""
    frame = scan_bucket(source, bucket, CLUSTER_SCHEMA).collect().sort(col.SAMPLE_ID)
    if frame.height < 2:
        return 0
    _, labels = np.unique(frame["cluster"].to_numpy(), return_inverse=True)  # dense: a bucket holds few clusters
    a, b, sim = bucket_pairs(binary_matrix(frame["vector"].to_arrow(), np.float16, dims), labels, config)
    ids = frame[col.SAMPLE_ID]
    pairs = pl.DataFrame({SAMPLE_A: ids.gather(a), SAMPLE_B: ids.gather(b), DETECTOR: "semantic",
                          SIMILARITY: pl.Series(sim, dtype=pl.Float32)})
    return write_pairs(with_kind(pairs), out / f"semantic-{bucket:05d}.parquet")
