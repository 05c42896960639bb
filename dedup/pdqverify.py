"""PDQ geometric verification as partitioned work: the candidates' ORB keypoints joined per bucket.
Pure: no Ray.

With ``dedup.pdq.verify`` the list joins of ``dedup.pdqjoin`` search out to ``verify.max_distance``. As
``dedup.detectors.pdq_pairs`` does in one process, then:

1. each query code keeps every hit within the PDQ threshold and its ``search.k`` closest beyond it
   (hits bucketed by the query's sample, so all of one query code's lists meet in one task);
2. a pair keeps its best match (merged per bucket of ``sample_a``); pairs within the threshold count
   as ``pdq`` (unless ``verify_all``), the others go on to verification, bucketed by ``sample_a``;
3. the ORB keypoints are shuffled by sample_id (a map task per batch of score files); a join task
   adds ``sample_a``'s, a second adds ``sample_b``'s and runs ORB + RANSAC (``verify.pair_inliers``):
   a verified pair beyond the threshold is ``pdq_verified``, within it (``verify_all``) ``pdq``.

Memory per task: one bucket of hits, of pairs, or of keypoints and the candidates that need them.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from dedup.cluster import SIMILARITY, found_pairs
from dedup.config import VerifyConfig
from dedup.shuffle import concat, scan_bucket, write_buckets, write_pairs
from dedup.verify import pair_inliers
from dedup.plan import Plan
from manifests import schema as col


BITS = 256
HIT_SCHEMA = {"a": pl.String, "b": pl.String, "slot": pl.Int16, "distance": pl.Int16}
CANDIDATE_SCHEMA = {"a": pl.String, "b": pl.String, SIMILARITY: pl.Float32}
FEATURE_SCHEMA = {col.SAMPLE_ID: pl.String, col.ORB_FEATURES: pl.Binary}
ROW_BYTES = 64
MISSING = ("dedup.pdq.verify is on but the score phase wrote no orb_features for some samples: "
           "re-run the score phase with dedup.pdq.verify.enabled=true")


def verified_pairs(plan: Plan, hits: Path, hit_buckets: int, near: int) -> int:
    """Driver: the list joins' hits (``HIT_SCHEMA``, bucketed by ``a``) -> pdq and pdq_verified pairs."""
    config, search, files = plan.config.pdq, plan.config.search, plan.layout.score_files()
    pairs_dir = plan.layout.pairs_dir
    capped, check, keypoints, half = (plan.fresh(n) for n in ("pdq-capped", "pdq-check", "pdq-orb", "pdq-half"))
    plan.each(cap_far, [(hits, b, near, search.k, hit_buckets, capped) for b in range(hit_buckets)])
    # a keypoint bucket holds the keypoints and, in the joins, the candidates carrying one set
    orb_bytes = 2 * config.verify.features * 48  # one orb_features value: the image's and its mirror's
    buckets = plan.buckets(sum(plan.file_rows(f) for f in files), ROW_BYTES + 2 * orb_bytes)
    found = sum(plan.each(split_near, [(capped, b, near, config.verify.verify_all, buckets, check, pairs_dir)
                                       for b in range(hit_buckets)]))
    plan.each(shuffle_features, [(batch, buckets, keypoints, f"{i:05d}")
                                 for i, batch in enumerate(plan.batches(files, ROW_BYTES + orb_bytes))])
    plan.each(attach_first, [(check, keypoints, b, buckets, half) for b in range(buckets)])
    return found + sum(plan.each(verify_second, [(half, keypoints, b, config.verify, near, pairs_dir)
                                                 for b in range(buckets)]))


def similarity(distance: pl.Expr) -> pl.Expr:
    """1 - hamming/256 in float32, as the one-process search computes it."""
    return (1.0 - distance.cast(pl.Float32) / pl.lit(BITS, pl.Float32)).cast(pl.Float32)


def is_near(near: int) -> pl.Expr:
    return pl.col(SIMILARITY) >= 1.0 - near / BITS - 1e-6


def cap_far(source: Path, bucket: int, near: int, k: int, buckets: int, out: Path) -> int:
    """Task: every hit within ``near`` and each query code's ``k`` closest beyond it (ties: smaller ``b``),
    as ordered pairs sent on to the bucket of their smaller sample_id."""
    hits = scan_bucket(source, bucket, HIT_SCHEMA).collect()
    far = (hits.filter(pl.col("distance") > near).sort("a", "slot", "distance", "b")
           .filter(pl.int_range(pl.len()).over("a", "slot") < k))
    kept = pl.concat([hits.filter(pl.col("distance") <= near), far])
    swap = pl.col("a") > pl.col("b")
    ordered = kept.select(pl.when(swap).then(pl.col("b")).otherwise(pl.col("a")).alias("a"),
                          pl.when(swap).then(pl.col("a")).otherwise(pl.col("b")).alias("b"),
                          similarity(pl.col("distance")).alias(SIMILARITY))
    return write_buckets(ordered, pl.col("a"), buckets, out, f"{bucket:05d}")


def split_near(source: Path, bucket: int, near: int, verify_all: bool, buckets: int, check: Path,
               out: Path) -> int:
    """Task: a pair's best match; pairs within the threshold written as ``pdq`` (``verify_all``: checked
    too), the others sent to verification by ``sample_a``. Returns the pdq pairs written here."""
    pairs = scan_bucket(source, bucket, CANDIDATE_SCHEMA).group_by("a", "b").agg(pl.col(SIMILARITY).max()).collect()
    counted = pairs.filter(is_near(near)) if not verify_all else pairs.clear()
    write_buckets(pairs.filter(~is_near(near)) if not verify_all else pairs, pl.col("a"), buckets, check,
                  f"{bucket:05d}")
    return write_pairs(found_pairs(counted, "pdq"), out / f"pdq-{bucket:05d}.parquet")


def shuffle_features(sources: list[Path], buckets: int, out: Path, part: str) -> int:
    """Map task: a batch of score files' ORB keypoints, bucketed by sample_id."""
    frame = concat(_features(source) for source in sources)
    return write_buckets(frame, pl.col(col.SAMPLE_ID), buckets, out, part)


def _features(source: Path) -> pl.DataFrame:
    if col.ORB_FEATURES not in pq.ParquetFile(source).schema_arrow.names:
        return pl.DataFrame()
    return pl.read_parquet(source, columns=[col.SAMPLE_ID, col.ORB_FEATURES]).drop_nulls()


def _joined(candidates: pl.LazyFrame, keypoints: Path, bucket: int, on: str, name: str) -> pl.DataFrame:
    features = scan_bucket(keypoints, bucket, FEATURE_SCHEMA).unique(col.SAMPLE_ID).rename({col.ORB_FEATURES: name})
    frame = candidates.join(features, left_on=on, right_on=col.SAMPLE_ID, how="left").collect()
    if frame[name].null_count():
        raise RuntimeError(MISSING)
    return frame


def attach_first(check: Path, keypoints: Path, bucket: int, buckets: int, out: Path,
                 schema: dict[str, pl.DataType] = CANDIDATE_SCHEMA) -> int:
    """Join task 1: candidates (``schema``) of this ``sample_a`` bucket with a's keypoints, sent on to b's bucket
    (also the keypoints detector's, whose candidates carry no similarity)."""
    frame = _joined(scan_bucket(check, bucket, schema), keypoints, bucket, "a", "orb_a")
    return write_buckets(frame, pl.col("b"), buckets, out, f"{bucket:05d}")


def verify_second(half: Path, keypoints: Path, bucket: int, config: VerifyConfig, near: int, out: Path) -> int:
    """Join task 2: b's keypoints added, ORB + RANSAC run; verified pairs written (pdq within the
    threshold, pdq_verified beyond)."""
    schema = {**CANDIDATE_SCHEMA, "orb_a": pl.Binary}
    frame = _joined(scan_bucket(half, bucket, schema), keypoints, bucket, "b", "orb_b")
    passed = [pair_inliers(a, b, config) >= config.min_inliers for a, b in zip(frame["orb_a"], frame["orb_b"])]
    frame = frame.filter(pl.Series(passed, dtype=pl.Boolean)).drop("orb_a", "orb_b")
    near_pairs, far_pairs = frame.filter(is_near(near)), frame.filter(~is_near(near))
    # near pairs reach here only with verify_all, when split_near writes no pdq part of its own
    return (write_pairs(found_pairs(near_pairs, "pdq"), out / f"pdq-{bucket:05d}.parquet")
            + write_pairs(found_pairs(far_pairs, "pdq_verified"), out / f"pdq_verified-{bucket:05d}.parquet"))
