"""Each detector: score-phase columns -> duplicate pairs (sample_a < sample_b, detector, similarity)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from dedup.artefacts import SampleIndex, binary_matrix, column_matrix, hex_matrix, iter_column
from dedup.cluster import DETECTOR, PAIRS_SCHEMA, SAMPLE_A, SAMPLE_B, SIMILARITY, with_kind
from dedup.config import MinHashConfig, PHashConfig, SearchConfig, SscdConfig
from dedup.phash import split_codes
from dedup.lsh import band_frame, band_keys, band_shape, candidate_pairs, verify
from dedup.search import binary_pairs, float_pairs
from manifests import schema as col


def named_pairs(index: SampleIndex, a: np.ndarray, b: np.ndarray, sim: np.ndarray, detector: str) -> pl.DataFrame:
    """Positions in the sorted run index -> the pairs table (a < b by position is a < b by sample_id)."""
    frame = pl.DataFrame({SAMPLE_A: index.names(a), SAMPLE_B: index.names(b),
                          DETECTOR: pl.Series([detector] * len(a), dtype=pl.String),
                          SIMILARITY: pl.Series(sim, dtype=pl.Float32)})
    return with_kind(frame).select(list(PAIRS_SCHEMA))


def equal_key_pairs(frame: pl.LazyFrame, key: str, detector: str) -> pl.DataFrame:
    """Samples sharing a non-null ``key``: each paired with the group's smallest sample_id (similarity 1)."""
    groups = (frame.select(col.SAMPLE_ID, key).drop_nulls().group_by(key).agg(pl.col(col.SAMPLE_ID).sort())
              .filter(pl.col(col.SAMPLE_ID).list.len() > 1))
    pairs = groups.select(pl.col(col.SAMPLE_ID).list.first().alias(SAMPLE_A),
                          pl.col(col.SAMPLE_ID).list.slice(1).alias(SAMPLE_B)).explode(SAMPLE_B)
    out = pairs.with_columns(pl.lit(detector).alias(DETECTOR), pl.lit(1.0, pl.Float32).alias(SIMILARITY)).collect()
    return with_kind(out).select(list(PAIRS_SCHEMA))


def caption_pairs(config: MinHashConfig, files: list[Path], index: SampleIndex, work: Path) -> pl.DataFrame:
    """MinHash LSH over every signature of the run; candidates verified against ``stored_from``."""
    work.mkdir(parents=True, exist_ok=True)
    bands, rows = band_shape(config.num_perm, config.stored_from, config.bands, config.false_negative_weight)
    signatures = np.lib.format.open_memmap(work / "minhash.npy", mode="w+", dtype=np.uint32,
                                           shape=(max(len(index), 1), config.num_perm))
    band_files = []
    for k, (ids, values) in enumerate(iter_column(files, col.CAPTION_MINHASH)):
        pos, sigs = index.positions(ids), binary_matrix(values, np.uint32, config.num_perm)
        signatures[pos] = sigs
        band_files.append(work / f"bands-{k:05d}.parquet")
        band_frame(pos, band_keys(sigs, bands, rows)).write_parquet(band_files[-1])
    if not band_files:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    candidates = candidate_pairs(band_files, config.max_bucket).collect(engine="streaming")
    verified = verify(candidates, signatures, config.stored_from)
    return named_pairs(index, verified["a"].to_numpy(), verified["b"].to_numpy(),
                       verified[SIMILARITY].to_numpy(), "minhash")


def phash_pairs(config: PHashConfig, search: SearchConfig, files: list[Path], index: SampleIndex) -> pl.DataFrame:
    nbytes = config.bits // 8
    pos, values = column_matrix(files, col.PHASH, index, lambda v: v.to_pylist())
    if values is None:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    codes, mirrored = split_codes(pl.Series(values, dtype=pl.String))
    max_distance = math.floor((1.0 - config.stored_from) * config.bits + 1e-9)
    a, b, sim = binary_pairs(hex_matrix(codes.to_arrow(), nbytes), max_distance, search,
                             None if mirrored is None else hex_matrix(mirrored.to_arrow(), nbytes))
    return named_pairs(index, pos[a], pos[b], sim, "phash")


def sscd_pairs(config: SscdConfig, search: SearchConfig, files: list[Path], index: SampleIndex) -> pl.DataFrame:
    pos, vectors = column_matrix(files, col.SSCD_EMBEDDING, index,
                                 lambda v: binary_matrix(v, np.float32, config.dims))
    if vectors is None:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    a, b, sim = float_pairs(vectors, config.stored_from, search)
    return named_pairs(index, pos[a], pos[b], sim, "sscd")
