"""Oversized LSH buckets (boilerplate captions): bounded candidates, and no member gets through the keep policy."""

from __future__ import annotations

import numpy as np
import polars as pl

from dedup.cluster import cluster
from dedup.config import MinHashConfig
from dedup.cluster import named_pairs
from dedup.artefacts import SampleIndex
from dedup.lsh import band_frame, band_keys, band_shape, candidate_pairs, verify
from dedup.minhash import MinHasher
from manifests import schema as col
from support.dedup_reference import check_keep_invariant

THRESHOLDS = {"sha256": 1.0, "pixel_hash": 1.0, "minhash": 0.8, "phash": 0.85, "sscd": 0.75}
BOILERPLATE = "stock photo of a beautiful young woman smiling at the camera in a sunny park"


def test_oversized_bucket_keeps_one_per_caption_even_when_its_first_member_is_dropped(tmp_path):
    config = MinHashConfig(enabled=True, max_bucket=8)
    variants = [BOILERPLATE + f" number {k}" for k in range(12)]  # 12 distinct signatures in the big buckets
    texts = [BOILERPLATE] * 150 + variants * 5 + [f"an unrelated caption about {w} and other things"
                                                  for w in ("cats", "dogs", "trains")]
    hasher = MinHasher(config.num_perm, config.ngram, config.seed, hashfunc=config.hashfunc)
    sigs, _ = hasher.signatures(texts)
    bands, rows = band_shape(config.num_perm, config.threshold)
    files = []
    for k, part in enumerate(np.array_split(np.random.default_rng(0).permutation(len(texts)), 3)):
        files.append(tmp_path / f"{k}.parquet")
        band_frame(part, band_keys(sigs[part], bands, rows)).write_parquet(files[-1])
    candidates = candidate_pairs(files, config.max_bucket).collect(engine="streaming")
    assert candidates.height < 2 * len(texts) + 13 * config.max_bucket  # members + leaders x heads, not n^2
    found = verify(candidates, sigs, config.threshold)
    index = SampleIndex.of(pl.Series([f"{i:04d}" for i in range(len(texts))]))
    pairs = named_pairs(index, found["a"].to_numpy(), found["b"].to_numpy(), found["similarity"].to_numpy(), "minhash")
    # The bucket's first member is a copy of a better picture: dropped by another detector.
    pairs = pl.concat([pairs, pairs.head(1).with_columns(pl.lit("9999").alias("sample_b"), pl.lit("phash")
                                                         .alias("detector"), pl.lit("image").alias(col.DUP_KIND))])
    scores = pl.DataFrame({col.SAMPLE_ID: [*index.ids, "9999"], col.AESTHETIC_SCORE: [1.0] * len(texts) + [9.0]})
    out = cluster(pairs, THRESHOLDS, scores)
    kept = pl.Series(sorted(set(scores[col.SAMPLE_ID]) - set(out.filter(pl.col(col.DUPLICATE_OF).is_not_null())
                                                                [col.SAMPLE_ID])))
    assert check_keep_invariant(pairs, THRESHOLDS, kept) == []
    kept_texts = [texts[int(s)] for s in kept if s != "9999"]
    assert kept_texts.count(BOILERPLATE) == 1  # not 149: the identical captions are one caption class
    assert all(kept_texts.count(v) <= 1 for v in variants) and len(kept_texts) <= 1 + 12 + 3
