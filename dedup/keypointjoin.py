"""Keypoints pairs as partitioned tasks (``dedup.keypoints`` holds the kernels and the method):

1. a map task per batch of score files: (sample_id, key, fine) rows bucketed by key, and the keypoints
   bucketed by sample_id (``pdqverify.shuffle_features``);
2. a task per key bucket: each key's holders paired, a common key's by its refined parts (``key_groups``;
   all of one key meet in one bucket), one row per shared group, sent to the bucket of ``a``;
3. a task per bucket of ``a``: pairs sharing ``min_shared`` keys, each marked when among its ``a``'s
   ``max_candidates`` that share the most, sent to the bucket of ``b``; a task per bucket of ``b`` keeps those
   marked or among their ``b``'s ``max_candidates`` (``candidates``), sent to a's keypoint bucket;
4. a join task adds a's keypoints, a second adds b's and verifies (as ``dedup.pdqverify`` does).

Memory per task: one bucket of keys, of shared-key rows, or of keypoints and the candidates that need them.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from dedup.config import KeypointConfig, ToneConfig, VerifyConfig
from dedup.cluster import SIMILARITY, found_pairs
from dedup.keyjoin import CANDIDATE_SCHEMA
from dedup.keypoints import (KEY_SCHEMA, SHARED_SCHEMA, among_most, copy_score, counted, group_pairs,
                             key_groups, key_rows, placement_tone)
from dedup.pdqverify import ROW_BYTES, _joined, attach_first, shuffle_features
from dedup.plan import Plan
from dedup.shuffle import concat, scan_bucket, write_buckets, write_pairs
from manifests import schema as col

KEY_BYTES = 64  # a shuffled key or shared-key row with hash-table overhead
RANKED_SCHEMA = {"a": pl.String, "b": pl.String, "len": pl.UInt32, "kept": pl.Boolean}


def keypoint_pairs(plan: Plan) -> int:
    """Driver: keypoints pairs to ``dedup/pairs/keypoints-NNNNN.parquet``; returns their count."""
    config, files = plan.config.pdq.verify, plan.layout.score_files()
    keys = config.keypoints
    rows = sum(plan.file_rows(f) for f in files)
    per_image = keys.points * keys.tables
    key_buckets = plan.buckets(rows * per_image, KEY_BYTES)
    orb_bytes = 2 * config.features * 48
    feature_buckets = plan.buckets(rows, ROW_BYTES + 2 * orb_bytes)
    keyed, shared, ranked, check, features, half = (plan.fresh(n) for n in ("kp-keys", "kp-shared", "kp-ranked",
                                                                            "kp-check", "kp-orb", "kp-half"))
    plan.each(shuffle_keys, [(batch, keys, key_buckets, keyed, f"{i:05d}")
                             for i, batch in enumerate(plan.batches(files, ROW_BYTES + orb_bytes))])
    plan.each(shuffle_features, [(batch, feature_buckets, features, f"{i:05d}")
                                 for i, batch in enumerate(plan.batches(files, ROW_BYTES + orb_bytes))])
    # a key held by h images pairs h(h-1)/2: counted before the pairs are shuffled, so buckets hold what they say
    pairs = sum(plan.each(shared_count, [(keyed, b, keys) for b in range(key_buckets)]))
    shared_buckets = plan.buckets(pairs, KEY_BYTES)
    plan.each(pair_keys, [(keyed, b, keys, shared_buckets, shared) for b in range(key_buckets)])
    plan.each(count_shared, [(shared, b, keys, shared_buckets, ranked) for b in range(shared_buckets)])
    plan.each(keep_most, [(ranked, b, keys, feature_buckets, check) for b in range(shared_buckets)])
    plan.each(attach_first, [(check, features, b, feature_buckets, half, CANDIDATE_SCHEMA)
                             for b in range(feature_buckets)])
    tone = placement_tone(plan.config)
    return sum(plan.each(verify_second, [(half, features, b, config, tone, plan.layout.pairs_dir)
                                         for b in range(feature_buckets)]))


def shuffle_keys(sources: list[Path], config: KeypointConfig, buckets: int, out: Path, part: str) -> int:
    """Map task: a batch of score files' keypoint keys, bucketed by key."""
    frame = concat(_keys(source, config) for source in sources)
    return write_buckets(frame, pl.col("key"), buckets, out, part)


def _keys(source: Path, config: KeypointConfig) -> pl.DataFrame:
    if col.ORB_FEATURES not in pq.ParquetFile(source).schema_arrow.names:
        return pl.DataFrame()
    frame = pl.read_parquet(source, columns=[col.SAMPLE_ID, col.ORB_FEATURES]).drop_nulls()
    return key_rows(frame[col.SAMPLE_ID], frame[col.ORB_FEATURES].to_list(), config)


def shared_count(source: Path, bucket: int, config: KeypointConfig) -> int:
    """Task: the (a, b, key) rows ``pair_keys`` will write for one key bucket."""
    sizes = _groups(source, bucket, config)["a"].list.len().cast(pl.Int64)
    return int((sizes * (sizes - 1) // 2).sum())


def pair_keys(source: Path, bucket: int, config: KeypointConfig, buckets: int, out: Path) -> int:
    """Task: one key bucket's shared keys, a row per (a, b, key group), sent to the bucket of ``a``."""
    shared = group_pairs(_groups(source, bucket, config)).collect()
    return write_buckets(shared, pl.col("a"), buckets, out, f"{bucket:05d}")


def _groups(source: Path, bucket: int, config: KeypointConfig) -> pl.DataFrame:
    return key_groups(scan_bucket(source, bucket, KEY_SCHEMA), config.max_bucket, config.refine_bits,
                      config.refine_levels)


def count_shared(source: Path, bucket: int, config: KeypointConfig, buckets: int, out: Path) -> int:
    """Task: pairs sharing ``min_shared`` keys, and whether each is among its ``a``'s ``max_candidates`` (every
    shared key of a pair, and every pair of an ``a``, is in this bucket: bucketed by ``a``), sent to b's bucket."""
    found = (counted(scan_bucket(source, bucket, SHARED_SCHEMA), config.min_shared)
             .with_columns(among_most("a", config.max_candidates).alias("kept")).collect())
    return write_buckets(found, pl.col("b"), buckets, out, f"{bucket:05d}")


def keep_most(source: Path, bucket: int, config: KeypointConfig, buckets: int, out: Path) -> int:
    """Task: the pairs among the ``max_candidates`` of their ``a`` or of their ``b`` (every pair of a ``b`` is in
    this bucket), sent to a's keypoint bucket: ``candidates``, a bucket at a time."""
    found = (scan_bucket(source, bucket, RANKED_SCHEMA)
             .filter(pl.col("kept") | among_most("b", config.max_candidates)).select("a", "b").collect())
    return write_buckets(found, pl.col("a"), buckets, out, f"{bucket:05d}")


def verify_second(half: Path, features: Path, bucket: int, config: VerifyConfig, tone: ToneConfig | None,
                  out: Path) -> int:
    """Task: b's keypoints added, the pairs verified (``copy_score``); verified pairs written as ``keypoints``."""
    schema = {**CANDIDATE_SCHEMA, "orb_a": pl.Binary}
    frame = _joined(scan_bucket(half, bucket, schema), features, bucket, "b", "orb_b")
    scores = pl.Series(SIMILARITY, [copy_score(a, b, config, tone) for a, b in zip(frame["orb_a"], frame["orb_b"])],
                       dtype=pl.Float32)
    verified = frame.with_columns(scores).filter(pl.col(SIMILARITY) > 0)
    return write_pairs(found_pairs(verified, "keypoints"), out / f"keypoints-{bucket:05d}.parquet")
