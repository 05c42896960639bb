"""Kept manifest rows + staged images -> WebDataset training shards. No model, no decode.

Each training sample is ``{key}.{jpg|png|webp}`` (the staged bytes as they are), ``{key}.txt`` (the
chosen caption) and ``{key}.json`` (every manifest column of the row). Output shards hold
``shard_size`` samples in sample_id order, so the same manifest always gives the same shards.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import polars as pl
from pydantic import Field

from manifests import schema as col
from manifests.config import StrictModel
from manifests.shards import Sample, iter_tar, write_tar


class ExportConfig(StrictModel):
    shard_size: int = Field(10_000, ge=1, description="samples per training shard")
    caption_source: Literal["caption", "caption_blip2", "caption_llava", "caption_blip2_short",
                            "caption_llava_short"] = Field(
        "caption", description="the column written to {key}.txt; a row without it falls back to the original "
                               "(the original and every recaption are in {key}.json either way)"
    )


@dataclass(frozen=True)
class ExportShard:
    index: int
    rows: list[dict]  # manifest rows of the kept samples, in sample_id order


def plan_shards(kept: pl.DataFrame, shard_size: int) -> list[ExportShard]:
    """Split kept rows (any order) into shards of ``shard_size`` in sample_id order."""
    rows = kept.sort(col.SAMPLE_ID).to_dicts()
    return [ExportShard(i, rows[start:start + shard_size])
            for i, start in enumerate(range(0, len(rows), shard_size))]


def shard_name(index: int) -> str:
    return f"{index:05d}.tar"


def caption_text(row: dict, caption_source: str) -> str:
    text = row.get(caption_source) or row.get(col.CAPTION) or ""
    return text


def _staged_images(run_root: Path, rows: list[dict]) -> dict[str, bytes]:
    """The staged image bytes of ``rows``, reading each staged tar once, sequentially."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        wanted[row[col.SHARD]].add(row[col.MEMBER])
    images = {}
    for shard, members in wanted.items():
        for key, files in iter_tar(run_root / shard):
            for ext, data in files.items():
                if f"{key}.{ext}" in members:
                    images[f"{key}.{ext}"] = data
    return images


def _samples(shard: ExportShard, images: dict[str, bytes], caption_source: str) -> Iterator[Sample]:
    for row in shard.rows:
        member = row[col.MEMBER]
        ext = member.rpartition(".")[2]
        yield row[col.SAMPLE_ID], {
            ext: images[member],
            "txt": caption_text(row, caption_source).encode("utf-8"),
            "json": json.dumps(row, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"),
        }


def write_export_shard(shard: ExportShard, run_root: Path, out_dir: Path, config: ExportConfig) -> dict:
    """Write one training shard; returns {"shard": name, "samples": n}."""
    images = _staged_images(run_root, shard.rows)
    missing = [r[col.MEMBER] for r in shard.rows if r[col.MEMBER] not in images]
    if missing:
        raise FileNotFoundError(f"staged images missing from the run (was it modified?): {missing[:5]}")
    count = write_tar(out_dir / shard_name(shard.index), _samples(shard, images, config.caption_source))
    return {"shard": shard_name(shard.index), "samples": count}
