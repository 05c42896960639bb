"""Synthetic manifests for tests and benchmarks: realistic column shapes, generated with numpy.

Rows are written in chunks with a streaming Parquet writer, so a 10M-row manifest never sits in
memory whole. The decision is passed in (usually ``filters.decide.decide`` bound to a config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from manifests import schema as col
from manifests.schema import Status

Decision = Callable[[pl.LazyFrame], pl.LazyFrame]

WORDS = ("a", "photo", "of", "the", "red", "dog", "on", "beach", "city", "night", "cat", "sofa", "mountain",
         "lake", "old", "car", "in", "snow", "vintage", "poster", "bowl", "fruit", "with", "street")
FAILED = (Status.FAILED_TO_DOWNLOAD, Status.FAILED_TO_DECODE, Status.FILTERED_SIZE)


def _captions(rng: np.random.Generator, pool_size: int = 4096) -> list[str]:
    lengths = rng.integers(0, 12, pool_size)
    return [" ".join(rng.choice(WORDS, n)) for n in lengths]


def chunk(start: int, n: int, seed: int, scores: bool = True) -> pl.DataFrame:
    """Rows ``start .. start+n`` of a synthetic manifest, without the decision columns."""
    rng = np.random.default_rng([seed, start])
    ids = pl.Series(col.SAMPLE_ID, np.arange(start, start + n)).cast(pl.String).str.zfill(9)
    failed = rng.random(n) < 0.1
    status = np.where(failed, rng.choice(FAILED, n), Status.SUCCESS)
    width = np.where(failed, 0, rng.integers(64, 2048, n)).astype(np.int32)
    height = np.where(failed, 0, (width * rng.uniform(0.2, 1.6, n)).astype(np.int32) + 1)
    frame = pl.DataFrame({
        col.SAMPLE_ID: ids,
        col.CAPTION: pl.Series(_captions(rng)).gather(rng.integers(0, 4096, n)),
        col.STATUS: status,
        col.ORIGINAL_WIDTH: pl.Series(width).set(pl.Series(failed), None),
        col.ORIGINAL_HEIGHT: pl.Series(height.astype(np.int32)).set(pl.Series(failed), None),
    }).with_columns(url=pl.lit("http://example.invalid/img/") + pl.col(col.SAMPLE_ID) + pl.lit(".jpg"))
    return frame.with_columns(_scores(rng, n, failed, ids)) if scores else frame


def _scores(rng: np.random.Generator, n: int, failed: np.ndarray, ids: pl.Series) -> list[pl.Series]:
    dup = ~failed & (rng.random(n) < 0.05)
    kinds = rng.choice(("exact", "image", "caption"), n)

    def scored(name: str, values: np.ndarray) -> pl.Series:
        return pl.Series(name, values.astype(np.float32)).set(pl.Series(failed), None)

    return [
        scored(col.CLIP_SCORE, rng.normal(0.28, 0.05, n)),
        scored(col.AESTHETIC_SCORE, rng.normal(5.0, 0.9, n)),
        scored(col.NSFW_PROB, rng.beta(0.6, 6.0, n)),
        pl.Series(col.DUPLICATE_OF, ids.shift(1)).set(pl.Series(~dup), None),
        pl.Series(col.DUP_KIND, kinds).set(pl.Series(~dup), None),
        pl.Series(col.DUP_SIMILARITY, rng.uniform(0.9, 1.0, n).astype(np.float32)).set(pl.Series(~dup), None),
    ]


def write_manifest(path: Path, rows: int, decision: Decision, seed: int = 0, scores: bool = True,
                   chunk_rows: int = 1_000_000) -> Path:
    """Write a decided synthetic manifest of ``rows`` rows to ``path`` (Parquet, zstd)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for start in range(0, rows, chunk_rows):
            part = decision(chunk(start, min(chunk_rows, rows - start), seed, scores).lazy()).collect().to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, part.schema, compression="zstd")
            writer.write_table(part.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
    return path

