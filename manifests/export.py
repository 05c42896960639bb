"""Kept manifest rows + staged images -> WebDataset training shards, laid out as img2dataset lays them out.

Each training sample is ``{key}.{jpg|png|webp}`` (the staged bytes as they are), ``{key}.txt`` (the
chosen caption) and ``{key}.json`` (``key`` and every contract column and extra column of the row: url,
caption, sizes, sha256, exif, scores, reasons, the error column named ``error_message`` as img2dataset
names it). Beside each ``NNNNN.tar`` lie ``NNNNN.parquet`` (the rows of that shard, img2dataset's
per-shard table, with the same columns) and ``NNNNN_stats.json`` (img2dataset's counts), and ``sizes.json``
(shard -> samples) lets open_clip-style loaders count samples without ``--train-num-samples``.
Shards hold ``shard_size`` samples in sample_id order, so the same manifest always gives the same
shards; a run whose kept rows fill fewer than ``min_shards`` is split evenly over ``min_shards``, so a
DataLoader with several workers has a shard for each.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import pyarrow as pa
from pydantic import Field

from manifests import schema as col
from manifests.config import StrictModel
from manifests.io import write_json, write_parquet
from manifests.shards import Sample, iter_tar, write_tar

KEY = "key"  # img2dataset's name for the sample key, in {key}.json and the per-shard Parquet
ERROR_MESSAGE = "error_message"  # img2dataset's name for the manifest's ``error``, in the same two places
SIZES = "sizes.json"


class ExportConfig(StrictModel):
    shard_size: int = Field(10_000, ge=1, description="samples per training shard")
    caption_source: Literal["caption", "caption_blip2", "caption_llava", "caption_qwen_vl", "caption_blip2_short",
                            "caption_llava_short", "caption_qwen_vl_short"] = Field(
        "caption", description="the column written to {key}.txt; a row without it falls back to the original "
                               "(the original and every recaption are in {key}.json either way)"
    )
    min_shards: int = Field(
        8, ge=1, description="a run whose kept rows fill fewer shards than this is split evenly into this many "
                             "(fewer only when there are fewer samples), so a DataLoader with several workers "
                             "has a shard for each"
    )
    manifest_file: bool = Field(
        False, description="also write the final manifest as one file, RUN/manifest.parquet, beside its part "
                           "files in RUN/manifest/ (one per ingest unit); for small runs and tools that want one file"
    )


@dataclass(frozen=True)
class ExportShard:
    index: int
    rows: list[dict]  # manifest rows of the kept samples, in sample_id order, with their export location
    schema: pa.Schema | None = None  # the manifest's, so the per-shard Parquet has the manifest's types


def shard_sizes(rows: int, shard_size: int, min_shards: int = 1) -> list[int]:
    """Samples per shard: full shards of ``shard_size`` and a remainder, or an even split over
    ``min_shards`` (sizes differing by at most one) when full shards would be fewer."""
    full = -(-rows // shard_size)
    if full >= min_shards or rows == 0:
        return [min(shard_size, rows - start) for start in range(0, rows, shard_size)]
    count = min(min_shards, rows)
    return [rows // count + (1 if i < rows % count else 0) for i in range(count)]


def shard_name(index: int) -> str:
    return f"{index:05d}.tar"


def write_sizes(out_dir: Path, written: list[dict]) -> None:
    """``sizes.json``: shard file name -> samples, as open_clip's loader reads it."""
    write_json({w["shard"]: w["samples"] for w in written}, out_dir / SIZES)


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


def shard_table(shard: ExportShard) -> pa.Table:
    """img2dataset's per-shard table: ``key`` first, then every contract column in its contract type (the
    ones this run lacks as nulls, so two runs' tables share one schema), then the input's extra columns;
    the error column is ``error_message``, as img2dataset and the tools written for it name it."""
    table = col.conform(pa.Table.from_pylist(shard.rows, schema=shard.schema))
    table = table.rename_columns([ERROR_MESSAGE if n == col.ERROR else n for n in table.column_names])
    return table.add_column(0, KEY, table.column(col.SAMPLE_ID))


def _is_text(kind: pa.DataType) -> bool:
    return any(test(kind) for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_timestamp,
                                       pa.types.is_date, getattr(pa.types, "is_string_view", lambda _: False)))


def sample_json(table: pa.Table) -> Iterator[bytes]:
    """Each row of a shard table as ``{key}.json``: every column, always, and a text column's null written
    as "" so its JSON type is a string in every sample. Hugging Face ``datasets`` infers the types of the
    whole dataset from the first samples of the first shard: a value null there and text later (a licence
    found in shard 3) fails the load, and a key absent there is dropped everywhere without a word. Numbers
    and booleans keep null (JSON has no typed null): on kept rows they are null only where their stage did
    not run, for the whole run."""
    text = [f.name for f in table.schema if _is_text(f.type)]
    for row in table.to_pylist():
        row.update({name: "" for name in text if row[name] is None})
        yield json.dumps(row, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8")


def _samples(shard: ExportShard, table: pa.Table, images: dict[str, bytes], caption_source: str) -> Iterator[Sample]:
    for row, meta in zip(shard.rows, sample_json(table)):
        member = row[col.MEMBER]
        ext = member.rpartition(".")[2]
        yield row[col.SAMPLE_ID], {ext: images[member], "txt": caption_text(row, caption_source).encode("utf-8"),
                                   "json": meta}


def write_export_shard(shard: ExportShard, run_root: Path, out_dir: Path, config: ExportConfig) -> dict:
    """Write one training shard, its Parquet and its stats; returns {"shard": name, "samples": n}."""
    start = time.time()
    images = _staged_images(run_root, shard.rows)
    missing = [r[col.MEMBER] for r in shard.rows if r[col.MEMBER] not in images]
    if missing:
        raise FileNotFoundError(f"staged images missing from the run (was it modified?): {missing[:5]}")
    name = shard_name(shard.index)
    table = shard_table(shard)
    count = write_tar(out_dir / name, _samples(shard, table, images, config.caption_source))
    write_parquet(table, out_dir / name.replace(".tar", ".parquet"))
    write_json(shard_stats(count, start), out_dir / name.replace(".tar", "_stats.json"))
    return {"shard": name, "samples": count}


def shard_stats(count: int, start: float) -> dict:
    """img2dataset's ``NNNNN_stats.json`` fields; every exported sample is a success by construction."""
    end = time.time()
    return {"count": count, "successes": count, "failed_to_download": 0, "failed_to_resize": 0,
            "duration": round(end - start, 3), "start_time": start, "end_time": end,
            "status_dict": {"success": count} if count else {}}
