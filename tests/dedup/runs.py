"""Helpers: a run directory (ingest rows + score files) built from generated items, split into shards."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from dedup.config import DedupConfig
from dedup.minhash import CaptionMinHasher
from dedup.phash import PerceptualHasher
from dedup.pixels import PixelHasher
from manifests.images import decode_rgb
from manifests import schema as col
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import Status

# dedup.pdq.verify off: PDQ pairs alone, for score tables made without orb_features (verification is on with PDQ).
UNVERIFIED = {"enabled": False}


@dataclass(frozen=True)
class Item:
    sample_id: str
    data: bytes
    caption: str
    photo: str
    edit: str  # "original", "copy" (same bytes), "png" (same pixels), or a synthetic edit


def score_batch(items: list[Item], config: DedupConfig) -> dict[str, np.ndarray]:
    batch = {col.SAMPLE_ID: np.array([i.sample_id for i in items], dtype=object),
             col.IMAGE: np.array([i.data for i in items], dtype=object),
             col.CAPTION: np.array([i.caption for i in items], dtype=object)}
    for stage in (PixelHasher(config.exact), PerceptualHasher(config.phash), CaptionMinHasher(config.minhash)):
        batch = stage(batch)
    return batch


def write_run(root: Path, items: list[Item], config: DedupConfig, shards: int, seed: int) -> RunLayout:
    """Ingest rows and score files as the earlier phases would write them, split into ``shards`` files."""
    layout = RunLayout.at(root)
    shuffled = random.Random(seed).sample(items, len(items))
    for k, part in enumerate(np.array_split(np.arange(len(shuffled)), shards)):
        chunk = [shuffled[i] for i in part]
        write_parquet(pa.table({
            col.SAMPLE_ID: [i.sample_id for i in chunk], col.STATUS: [Status.SUCCESS] * len(chunk),
            col.SHA256: [hashlib.sha256(i.data).hexdigest() for i in chunk],
            col.ORIGINAL_WIDTH: pa.array([decode_rgb(i.data).width for i in chunk], pa.int32()),
            col.ORIGINAL_HEIGHT: pa.array([decode_rgb(i.data).height for i in chunk], pa.int32()),
        }), layout.staged_rows(k))
        batch = score_batch(chunk, config)
        written = [col.SAMPLE_ID, col.PIXEL_HASH, col.PHASH, col.CAPTION_MINHASH]
        write_parquet(pa.table({c: batch[c].tolist() for c in written}), layout.scores_dir / f"{k:03d}.parquet")
    return layout
