"""Export from the partitioned decision: a shard's rows from its ranges, a unit's final manifest part.

The driver plans shards from per-unit kept counts (``manifests.shardplan``); an export task reads the
decided part and captions of only the units its ranges name, and a manifest task per unit writes
``manifest/part-UNIT.parquet`` (decision + captions + export location) from that unit's spans alone.
Memory per task: one unit's rows.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from manifests import schema as col
from manifests.export import ExportConfig, ExportShard, shard_name, write_export_shard
from manifests.io import atomic_path, write_parquet
from manifests.layout import RunLayout
from manifests.parts import conform, file_schemas
from manifests.shardplan import ShardRange

Tasks = Callable[[Callable[..., Any], list[tuple]], list[Any]]  # dedup.plan's executor: Ray or a loop


def captions_schema(layout: RunLayout) -> pl.Schema:
    """The recaption columns (sample_id first) of every unit's caption files, from their footers."""
    files = sorted(layout.captions_dir.rglob("*.parquet")) if layout.captions_dir.exists() else []
    schema = file_schemas(files)
    return pl.Schema({n: t for n, t in schema.items() if n != "unit"}) if files else pl.Schema()


def unit_rows(layout: RunLayout, unit: str, captions: pl.Schema) -> pl.DataFrame:
    """One unit's decided rows with their recaptions, in sample_id order."""
    rows = pl.read_parquet(layout.decided_part(unit))
    if len(captions) > 1:
        # Each file to the unified schema first: a caption column one block wrote all null has type null there.
        found = [conform(pl.read_parquet(f, hive_partitioning=False), captions) for f in layout.unit_captions(unit)]
        rows = rows.join(pl.concat(found) if found else conform(pl.DataFrame(), captions), on=col.SAMPLE_ID,
                         how="left", maintain_order="left")
    return rows.sort(col.SAMPLE_ID)


def _located(rows: pl.DataFrame, shard: pl.Expr) -> pl.DataFrame:
    ext = pl.col(col.MEMBER).str.split(".").list.last()
    return rows.with_columns(shard.cast(pl.String).alias(col.EXPORT_SHARD),
                             pl.when(shard.is_not_null()).then(pl.concat_str(pl.col(col.SAMPLE_ID), pl.lit("."), ext))
                             .cast(pl.String).alias(col.EXPORT_MEMBER))


def range_shard(root: str, index: int, ranges: list[ShardRange], captions: pl.Schema) -> ExportShard:
    """The kept rows of one planned shard, located, read from the units its ranges name."""
    layout = RunLayout.at(root)
    where = pl.lit(f"shards/{shard_name(index)}")
    frames = [_located(unit_rows(layout, r.partition, captions).filter(pl.col(col.KEEP)).slice(r.start, r.stop - r.start),
                       where) for r in ranges]
    frame = pl.concat(frames)
    return ExportShard(index, frame.to_dicts(), frame.to_arrow().schema)


def write_manifest_part(root: str, unit: str, spans: list[tuple[int, int, int]], captions: pl.Schema,
                        out: str) -> int:
    """Task: ``out/part-UNIT.parquet``, the unit's final manifest rows; ``spans``: (start, stop, shard)
    over the unit's kept rows in sample_id order."""
    layout = RunLayout.at(root)
    rows = unit_rows(layout, unit, captions)
    position = np.cumsum(rows[col.KEEP].to_numpy()) - 1  # each kept row's position among the kept
    shard = np.full(rows.height, None, dtype=object)
    for start, stop, index in spans:
        inside = rows[col.KEEP].to_numpy() & (position >= start) & (position < stop)
        shard[inside] = f"shards/{shard_name(index)}"
    write_parquet(_located(rows, pl.lit(pl.Series(shard.tolist(), dtype=pl.String))).to_arrow(), Path(out) / f"part-{unit}.parquet")
    return rows.height


def export_shard(root: str, images: str, index: int, ranges: list[ShardRange], captions: pl.Schema, out: str,
                 config: ExportConfig) -> dict:
    """Task: one training shard from its ranges of ``root``'s decided parts and ``images``' staged tars."""
    return write_export_shard(range_shard(root, index, ranges, captions), Path(images), Path(out), config)


def write_manifest(layout: RunLayout, units: list[str], spans: dict[str, list[tuple[int, int, int]]],
                   captions: pl.Schema, tasks: Tasks, one_file: bool) -> int:
    """manifest/part-UNIT.parquet for every unit, by ``tasks``, swapped in whole; manifest.parquet too when
    ``one_file``. Returns the rows written."""
    tmp = layout.root / f".manifest.{uuid.uuid4().hex}.tmp"
    rows = sum(tasks(write_manifest_part, [(str(layout.root), u, spans.get(u, []), captions, str(tmp)) for u in units]))
    shutil.rmtree(layout.manifest_dir, ignore_errors=True)
    if units:
        tmp.rename(layout.manifest_dir)
    layout.manifest.unlink(missing_ok=True)
    if one_file and units:
        write_one_file(layout.manifest_files(), layout.manifest)
    return rows


def write_one_file(parts: list[Path], path: Path) -> int:
    """``export.manifest_file``: the parts copied into one Parquet file, a part at a time."""
    rows = 0
    with atomic_path(path) as tmp:
        writer = None
        for part in parts:
            table = pq.read_table(part)
            writer = writer or pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
            rows += table.num_rows
        if writer is not None:
            writer.close()
    return rows
