"""Exact keys and caption-LSH band keys, shuffled (``dedup.shuffle``) and grouped one bucket at a time.
Pure: files in, files out, no Ray.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from dedup.artefacts import binary_matrix
from dedup.cluster import DETECTOR, SAMPLE_A, SAMPLE_B, SIMILARITY, equal_key_pairs, with_kind
from dedup.config import MinHashConfig
from dedup.lsh import band_frame, band_keys, band_shape, candidate_pairs
from dedup.minhash import jaccard_estimate
from dedup.shuffle import concat, scan_bucket, write_buckets, write_pairs
from manifests import schema as col
from manifests.schema import Status

SIGNATURE = "signature"


# --- exact groups: sha256 / pixel_hash ---------------------------------------------------------

KEYED_SCHEMA = {col.SAMPLE_ID: pl.String, "key": pl.String}


def shuffle_keys(sources: list[Path], key: str, only_success: bool, buckets: int, out: Path, part: str) -> int:
    """Map task: (sample_id, key) of a batch of input files' non-null keys -> buckets by key."""
    frame = concat(_keys(source, key, only_success) for source in sources)
    return write_buckets(frame, pl.col("key"), buckets, out, part)


def _keys(source: Path, key: str, only_success: bool) -> pl.DataFrame:
    if key not in pq.ParquetFile(source).schema_arrow.names:
        return pl.DataFrame()
    frame = pl.scan_parquet(source)
    if only_success:
        frame = frame.filter(pl.col(col.STATUS) == Status.SUCCESS)
    return frame.select(col.SAMPLE_ID, pl.col(key).alias("key")).drop_nulls().collect(engine="streaming")


def group_exact(source: Path, bucket: int, detector: str, out: Path) -> int:
    """Reduce task: each key of the bucket -> its members paired with its smallest sample_id."""
    pairs = equal_key_pairs(scan_bucket(source, bucket, KEYED_SCHEMA), "key", detector)
    return write_pairs(pairs, out / f"{detector}-{bucket:05d}.parquet")


# --- caption LSH: band keys -> candidates -> verified with the signatures each bucket needs -----

BAND_SCHEMA = {"idx": pl.String, "band": pl.Int16, "key": pl.UInt64, "sig": pl.UInt64}
SIGNATURE_SCHEMA = {col.SAMPLE_ID: pl.String, SIGNATURE: pl.Binary}
CANDIDATE_SCHEMA = {"a": pl.String, "b": pl.String}


def shuffle_bands(sources: list[Path], config: MinHashConfig, band_buckets: int, sig_buckets: int,
                  bands_out: Path, sigs_out: Path, part: str) -> int:
    """Map task: a batch of score files' signatures -> band keys bucketed by (band, key), and the
    signatures themselves bucketed by sample_id (read back only by the verification of pairs that need them)."""
    sigs = concat(_signatures(source) for source in sources)
    if sigs.is_empty():
        return 0
    bands, rows = band_shape(config.num_perm, config.stored_from, config.bands, config.false_negative_weight)
    keys = band_keys(binary_matrix(sigs[SIGNATURE].to_arrow(), np.uint32, config.num_perm), bands, rows)
    frame = band_frame(sigs[col.SAMPLE_ID].to_numpy(), keys)
    write_buckets(frame, pl.struct("band", "key"), band_buckets, bands_out, part)
    write_buckets(sigs, pl.col(col.SAMPLE_ID), sig_buckets, sigs_out, part)
    return sigs.height


def _signatures(source: Path) -> pl.DataFrame:
    if col.CAPTION_MINHASH not in pq.ParquetFile(source).schema_arrow.names:
        return pl.DataFrame()
    return (pl.scan_parquet(source).select(col.SAMPLE_ID, pl.col(col.CAPTION_MINHASH).alias(SIGNATURE))
            .drop_nulls().collect())


def group_bands(source: Path, bucket: int, max_bucket: int, sig_buckets: int, out: Path) -> int:
    """Reduce task: the band buckets' candidate pairs (a < b), sent on to the signature bucket of ``a``."""
    pairs = candidate_pairs(scan_bucket(source, bucket, BAND_SCHEMA), max_bucket).collect(engine="streaming")
    return write_buckets(pairs, pl.col("a"), sig_buckets, out, f"{bucket:05d}")


def attach_first(candidates: Path, sigs: Path, bucket: int, sig_buckets: int, out: Path) -> int:
    """Join task 1: unique candidates whose ``a`` is in this signature bucket, with a's signature,
    sent on to the signature bucket of ``b``."""
    pairs = scan_bucket(candidates, bucket, CANDIDATE_SCHEMA).unique()
    joined = pairs.join(scan_bucket(sigs, bucket, SIGNATURE_SCHEMA).unique(col.SAMPLE_ID),
                        left_on="a", right_on=col.SAMPLE_ID).collect(engine="streaming")
    return write_buckets(joined, pl.col("b"), sig_buckets, out, f"{bucket:05d}")


def verify_second(half: Path, sigs: Path, bucket: int, config: MinHashConfig, out: Path) -> int:
    """Join task 2: b's signature added, estimated Jaccard >= ``stored_from`` kept as minhash pairs."""
    schema = {"a": pl.String, "b": pl.String, SIGNATURE: pl.Binary}
    pairs = (scan_bucket(half, bucket, schema)
             .join(scan_bucket(sigs, bucket, SIGNATURE_SCHEMA).unique(col.SAMPLE_ID)
                   .rename({SIGNATURE: "signature_b"}), left_on="b", right_on=col.SAMPLE_ID)
             .collect(engine="streaming"))
    if pairs.is_empty():
        return 0
    sim = jaccard_estimate(binary_matrix(pairs[SIGNATURE].to_arrow(), np.uint32, config.num_perm),
                           binary_matrix(pairs["signature_b"].to_arrow(), np.uint32, config.num_perm))
    ok = sim >= config.stored_from
    found = pl.DataFrame({SAMPLE_A: pairs["a"].filter(ok), SAMPLE_B: pairs["b"].filter(ok),
                          DETECTOR: pl.Series(["minhash"] * int(ok.sum()), dtype=pl.String),
                          SIMILARITY: pl.Series(sim[ok], dtype=pl.Float32)})
    return write_pairs(with_kind(found), out / f"minhash-{bucket:05d}.parquet")
