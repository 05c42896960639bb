"""A generated run from the score files onward, at any size: exact groups, caption signatures with
planted near-duplicates, pHash codes with planted neighbours, scores. For bench/scale.py and tests.

Rows are generated per file from their global index alone (a counter hash), so any file of a
10M-row run is written by one task in bounded memory and a copy's source may sit in any other file.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from manifests import schema as col
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import INGEST_SCHEMA, conform

NUM_PERM = 128
RATES = {"sha256": 0.01, "pixel_hash": 0.01, "minhash": 0.04, "phash": 0.03}  # copies per row, by detector
_SALT = {"sha256": 1, "pixel_hash": 2, "minhash": 3, "phash": 4, "pick": 5, "noise": 6, "score": 7}


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64: a counter -> 64 well-mixed bits."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _u(index: np.ndarray, salt: int) -> np.ndarray:
    """A uniform [0, 1) value per row for ``salt``."""
    return (mix(index.astype(np.uint64) * np.uint64(16) + np.uint64(salt)) >> np.uint64(11)) / float(1 << 53)


def _copies(index: np.ndarray, kind: str) -> np.ndarray:
    return (_u(index, _SALT[kind]) < RATES[kind]) & (index > 0)


def _back(index: np.ndarray, kind: str) -> np.ndarray:
    return np.minimum(index, 1 + (_u(index, _SALT[kind] + 100) * np.minimum(index, 1_000_000)).astype(np.int64))


def sources(index: np.ndarray, kind: str) -> np.ndarray:
    """The row each row copies for ``kind`` (itself when it is no copy): an earlier row, at any
    distance, that is itself no copy of any kind, so every planted pair is a real duplicate."""
    copy = _copies(index, kind)
    src = index - np.where(copy, _back(index, kind), 0)
    for _ in range(64):  # walk back past rows that are copies themselves
        bad = copy & np.any([_copies(src, k) for k in RATES], axis=0)
        if not bad.any():
            break
        src[bad] -= _back(src[bad], kind)
    return np.where(copy & ~np.any([_copies(src, k) for k in RATES], axis=0), src, index)


def sample_ids(index: np.ndarray) -> pl.Series:
    return pl.Series(col.SAMPLE_ID, index).cast(pl.String).str.zfill(11)


def _signatures(index: np.ndarray) -> np.ndarray:
    """Original rows: random values; copies: their source's with ~6% of the values replaced (Jaccard ~0.94)."""
    src = sources(index, "minhash")
    perm = np.arange(NUM_PERM, dtype=np.uint64)
    base = mix(src.astype(np.uint64)[:, None] * np.uint64(NUM_PERM) + perm + np.uint64(1 << 40))
    noise = mix(index.astype(np.uint64)[:, None] * np.uint64(NUM_PERM) + perm + np.uint64(1 << 41))
    replaced = (src != index)[:, None] & ((noise >> np.uint64(7)) % np.uint64(100) < np.uint64(6))
    return np.where(replaced, noise, base).astype(np.uint32)


def _codes(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """64-bit pHash codes: copies flip 1-4 bits of their source's code; and the mirrored codes."""
    src = sources(index, "phash")
    code = mix(src.astype(np.uint64) + np.uint64(1 << 42))
    flips = np.zeros(len(index), dtype=np.uint64)
    for k in range(4):
        bit = (mix(index.astype(np.uint64) * np.uint64(8) + np.uint64(k)) % np.uint64(64))
        on = (src != index) & ((k == 0) | (_u(index, 20 + k) < 0.5))
        flips ^= np.where(on, np.uint64(1) << bit, np.uint64(0))
    return code ^ flips, mix(src.astype(np.uint64) + np.uint64(1 << 43)) ^ flips


def _hex(values: np.ndarray) -> np.ndarray:
    """uint64 -> 16 hex digits each, without a Python loop."""
    return np.frombuffer(values.astype(">u8").tobytes().hex().encode(), dtype="S16")


def _binary(matrix: np.ndarray) -> pa.Array:
    """(n, width) uint32 -> a binary column of little-endian rows, from one buffer."""
    data = np.ascontiguousarray(matrix, dtype="<u4")
    fixed = pa.Array.from_buffers(pa.binary(data.shape[1] * 4), len(data), [None, pa.py_buffer(data.tobytes())])
    return fixed.cast(pa.binary())


def write_part(layout: RunLayout, part: int, start: int, stop: int) -> int:
    """Rows [start, stop) as staged ingest rows and one score file; returns rows written."""
    index = np.arange(start, stop, dtype=np.int64)
    ids = sample_ids(index)
    exact = sources(index, "sha256")
    pixel = np.where(exact != index, exact, sources(index, "pixel_hash"))
    size = (64 + (_u(index, 9) * 960)).astype(np.int32)
    rows = pl.DataFrame({col.SAMPLE_ID: ids, col.STATUS: ["success"] * len(index),
                         col.CAPTION: "a generated sample, caption number " + ids, col.SHARD: f"{part:05d}.tar",
                         col.MEMBER: ids + ".jpg", col.SHA256: pl.Series(exact).cast(pl.String).str.zfill(64),
                         col.ORIGINAL_WIDTH: size, col.ORIGINAL_HEIGHT: size, col.WIDTH: size, col.HEIGHT: size})
    write_parquet(conform(rows.to_arrow(), INGEST_SCHEMA), layout.staged_rows(part))
    code, mirrored = _codes(index)
    score = pl.DataFrame({
        col.SAMPLE_ID: ids, col.PIXEL_HASH: pl.Series(pixel).cast(pl.String).str.zfill(64),
        col.PHASH: pl.Series(np.char.add(np.char.add(_hex(code), b":"), _hex(mirrored))).cast(pl.String),
        col.CAPTION_MINHASH: pl.Series(_binary(_signatures(index))),
        col.AESTHETIC_SCORE: (_u(index, 10) * 10).astype(np.float32),
        col.CLIP_SCORE: (_u(index, 11) * 0.4).astype(np.float32)})
    write_parquet(score.to_arrow(), layout.scores_dir / f"{part:05d}.parquet")
    return len(index)


def planted(index: np.ndarray, kind: str) -> pl.DataFrame:
    """(sample_a, sample_b) of the copies planted for ``kind`` among rows ``index``: copy and source."""
    src = sources(index, kind)
    copy = src != index
    if kind == "pixel_hash":  # a byte copy's pixel key is its byte source's: its pixel copy is not planted
        copy &= sources(index, "sha256") == index
    a, b = sample_ids(src[copy]), sample_ids(index[copy])
    return pl.DataFrame({"sample_a": a, "sample_b": b})
