"""Global MinHash LSH: band keys per sample -> group by (band, key) -> candidate pairs -> verified pairs.

Band keys are written per input file (one small Parquet each); grouping is one Polars query over all
of them run by the streaming engine, so the signatures themselves never have to sit in one process:
verification reads them from a memory-mapped matrix, one chunk of pairs at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from datasketch.lsh import _optimal_param

from dedup.minhash import jaccard_estimate

_PRIME = np.uint64(0x100000001B3)


def band_shape(num_perm: int, threshold: float, bands: int | None = None,
               false_negative_weight: float = 0.9) -> tuple[int, int]:
    """(bands, rows per band): datasketch MinHashLSH's optimum for ``threshold`` unless ``bands`` is given.

    Every candidate is verified, so a false positive costs one comparison while a false negative is a
    missed duplicate: the default weighs misses 9:1 (128 perm at 0.8 -> 14 bands x 9 rows, a pair at
    Jaccard 0.8 becomes a candidate with p=0.87, at 0.85 with p=0.975).
    """
    if bands is not None:
        if bands > num_perm:
            raise ValueError(f"dedup.minhash.bands={bands} exceeds num_perm={num_perm}")
        return bands, num_perm // bands
    return _optimal_param(threshold, num_perm, 1 - false_negative_weight, false_negative_weight)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 keys; a key collision only adds a candidate that verification removes."""
    sig = signatures[:, :bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
    key = np.full(sig.shape[:2], np.uint64(0xCBF29CE484222325))
    for r in range(rows):
        key ^= sig[:, :, r]
        key *= _PRIME
    key ^= key >> np.uint64(29)
    return key


def signature_keys(keys: np.ndarray) -> np.ndarray:
    """One uint64 per row of (n, bands) band keys, equal for identical signatures (what oversized buckets
    group by)."""
    whole = np.full(len(keys), np.uint64(0xCBF29CE484222325))
    for band in range(keys.shape[1]):
        whole ^= keys[:, band]
        whole *= _PRIME
    return whole


def band_frame(ids: np.ndarray, keys: np.ndarray) -> pl.DataFrame:
    """Long format: one row per (sample, band), with ``sig``, a key of all the sample's bands together
    (equal for identical signatures), which oversized buckets group by. ``ids``: the samples' sample_ids
    (the shuffle) or int64 positions (one process)."""
    n, bands = keys.shape
    return pl.DataFrame({
        "idx": np.repeat(ids, bands),
        "band": np.tile(np.arange(bands, dtype=np.int16), n),
        "key": keys.reshape(-1),
        "sig": np.repeat(signature_keys(keys), bands),
    })


def candidate_pairs(band_files: list[Path] | pl.LazyFrame, max_bucket: int) -> pl.LazyFrame:
    """Unique (a, b), a < b, sharing a band key.

    A bucket of up to ``max_bucket`` members pairs them all. A larger one (boilerplate captions) is
    split by whole signature: identical signatures are an equivalence, stored as a star around their
    smallest member (the keep policy treats a MinHash pair at similarity 1 as one caption class, so
    a star cannot let its leaves through); each distinct signature's leader is paired with the
    bucket's first ``max_bucket`` leaders. Candidates grow with members + leaders x max_bucket, not
    members squared. What is not paired: two distinct, similar signatures that are both beyond the
    first ``max_bucket`` distinct ones of a bucket, and whose only links are to those first ones.
    ``band_files``: files of band rows, or the rows themselves (one bucket of a shuffle).
    """
    bands = band_files if isinstance(band_files, pl.LazyFrame) else pl.scan_parquet([str(f) for f in band_files])
    buckets = (bands
               .group_by("band", "key").agg(pl.col("idx").sort(), pl.col("sig").sort_by("idx"))
               .filter(pl.col("idx").list.len() > 1))
    small = (buckets.filter(pl.col("idx").list.len() <= max_bucket)
             .select(pl.col("idx").alias("a"), pl.col("idx").alias("b"))
             .explode("a").explode("b").filter(pl.col("a") < pl.col("b")))
    large = buckets.filter(pl.col("idx").list.len() > max_bucket).explode("idx", "sig")
    groups = large.group_by("band", "key", "sig").agg(pl.col("idx").min().alias("a"), pl.col("idx").alias("b"))
    same = groups.select("a", "b").explode("b").filter(pl.col("a") < pl.col("b"))
    leaders = groups.select("band", "key", "a")
    heads = leaders.filter(pl.col("a").rank("ordinal").over("band", "key") <= max_bucket).rename({"a": "head"})
    cross = (leaders.join(heads, on=["band", "key"])
             .select(pl.min_horizontal("a", "head").alias("a"), pl.max_horizontal("a", "head").alias("b"))
             .filter(pl.col("a") < pl.col("b")))
    return pl.concat([small, same, cross]).unique()


def verify(pairs: pl.DataFrame, signatures: np.ndarray, threshold: float, chunk: int = 1 << 20) -> pl.DataFrame:
    """Candidates whose estimated Jaccard (from the signatures) is at least ``threshold``, sorted."""
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    keep_a, keep_b, keep_s = [], [], []
    for start in range(0, len(a), chunk):
        ca, cb = a[start:start + chunk], b[start:start + chunk]
        sim = jaccard_estimate(signatures[ca], signatures[cb])
        ok = sim >= threshold
        keep_a.append(ca[ok])
        keep_b.append(cb[ok])
        keep_s.append(sim[ok].astype(np.float32))
    out = pl.DataFrame({"a": np.concatenate(keep_a or [np.empty(0, np.int64)]),
                        "b": np.concatenate(keep_b or [np.empty(0, np.int64)]),
                        "similarity": np.concatenate(keep_s or [np.empty(0, np.float32)])})
    return out.sort("a", "b")
