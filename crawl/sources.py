"""Inputs -> work units of at most ``rows_per_shard`` rows, read in bounded chunks.

URL lists and folders are split into small Parquet unit files (memory never holds more than one
chunk); WebDataset inputs use each tar as a unit as it is. Sample ids follow img2dataset's keys:
the unit index zero-padded to 5 digits, then the row's index inside the unit zero-padded to
ceil(log10(rows_per_shard)) digits, so a URL list ingested by both tools gets the same keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from crawl.config import InputConfig
from manifests import schema as col
from manifests.io import write_parquet

SHARD_DIGITS = 5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
UNIT_SCHEMA = pa.schema(
    [
        pa.field(col.SAMPLE_ID, pa.string()),
        pa.field(col.URL, pa.string()),
        pa.field(col.CAPTION, pa.string()),
        pa.field(col.SOURCE, pa.string()),
        pa.field(col.SOURCE_ROW, pa.int64()),
    ]
)


@dataclass(frozen=True)
class Unit:
    """One piece of ingest work: rows of a unit Parquet file, or one input tar."""

    index: int
    kind: str  # "url_list" | "folder" | "webdataset"
    path: str


def sample_key(unit: int, row: int, rows_per_shard: int) -> str:
    digits = max(1, math.ceil(math.log10(rows_per_shard))) if rows_per_shard > 1 else 1
    return f"{unit:0{SHARD_DIGITS}d}{row:0{digits}d}"


def detect_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    for fmt, suffixes in {"parquet": (".parquet",), "csv": (".csv", ".tsv"), "jsonl": (".jsonl", ".json")}.items():
        if suffix in suffixes:
            return fmt
    raise ValueError(f"input.format: cannot tell the format of {path.name!r}; set input.format to parquet, csv or jsonl")


def _batches(path: Path, fmt: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    if fmt == "parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=columns)
    elif fmt == "csv":
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = pacsv.open_csv(
            path,
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(include_columns=columns,
                                                 column_types={c: pa.string() for c in columns}),
        )
        yield from reader
    else:
        yield from _jsonl_batches(path, columns)


def _jsonl_batches(path: Path, columns: list[str], block_bytes: int = 8 << 20) -> Iterator[pa.RecordBatch]:
    """JSON lines in blocks of whole lines, so memory is bounded by the block, not the file."""
    with path.open("rb") as f:
        while True:
            block = f.read(block_bytes)
            if not block:
                return
            block += f.readline()
            table = pajson.read_json(pa.py_buffer(block))
            yield from table.select([c for c in columns if c in table.column_names]).to_batches()


def _check_columns(path: Path, fmt: str, config: InputConfig) -> list[str]:
    columns = [config.url_col] + ([config.caption_col] if config.caption_col else [])
    if fmt == "parquet":
        names = pq.ParquetFile(path).schema_arrow.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"input: {path} has no column(s) {missing}; it has {names}. "
                             "Set input.url_col / input.caption_col to the right names.")
    return columns


def _chunks(rows: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in rows:
        while batch.num_rows:
            take = min(size - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == size:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


def _write_unit(units_dir: Path, index: int, urls: list, captions: list, source: str,
                first_row: int, rows_per_shard: int) -> Unit:
    n = len(urls)
    table = pa.table(
        {
            col.SAMPLE_ID: [sample_key(index, i, rows_per_shard) for i in range(n)],
            col.URL: urls,
            col.CAPTION: captions,
            col.SOURCE: [source] * n,
            col.SOURCE_ROW: list(range(first_row, first_row + n)),
        },
        schema=UNIT_SCHEMA,
    )
    path = units_dir / f"{index:05d}.parquet"
    write_parquet(table, path)
    return Unit(index, "url_list", str(path))


def plan_url_list(config: InputConfig, units_dir: Path) -> list[Unit]:
    path = Path(config.path)
    fmt = detect_format(path, config.format)
    columns = _check_columns(path, fmt, config)
    units, first_row = [], 0
    for index, chunk in enumerate(_chunks(_batches(path, fmt, columns), config.rows_per_shard)):
        if config.url_col not in chunk.column_names:
            raise ValueError(f"input: {path} has no column {config.url_col!r}; set input.url_col")
        urls = chunk.column(config.url_col).cast(pa.string()).to_pylist()
        captions = (chunk.column(config.caption_col).cast(pa.string()).to_pylist()
                    if config.caption_col and config.caption_col in chunk.column_names else [None] * len(urls))
        units.append(_write_unit(units_dir, index, urls, captions, str(path), first_row, config.rows_per_shard))
        first_row += len(urls)
        pa.default_memory_pool().release_unused()  # hand freed chunk buffers back, so RSS tracks one chunk
    return units


def plan_folder(config: InputConfig, units_dir: Path) -> list[Unit]:
    root = Path(config.path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    units = []
    for index, start in enumerate(range(0, len(files), config.rows_per_shard)):
        chunk = files[start:start + config.rows_per_shard]
        captions = [_sidecar_caption(p) for p in chunk]
        unit = _write_unit(units_dir, index, [p.resolve().as_uri() for p in chunk], captions,
                           str(root), start, config.rows_per_shard)
        units.append(Unit(unit.index, "folder", unit.path))
    return units


def _sidecar_caption(image: Path) -> str | None:
    txt = image.with_suffix(".txt")
    return txt.read_text(encoding="utf-8", errors="replace").strip() if txt.exists() else None


def plan_webdataset(config: InputConfig) -> list[Unit]:
    root = Path(config.path)
    tars = [root] if root.is_file() else sorted(root.glob("*.tar"))
    return [Unit(i, "webdataset", str(p)) for i, p in enumerate(tars)]


def plan_units(config: InputConfig, units_dir: Path) -> list[Unit]:
    """Split the input into work units. Raises before any work when the input is missing or malformed."""
    if not Path(config.path).exists():
        raise FileNotFoundError(f"input.path: {config.path} does not exist")
    if config.kind == "url_list":
        return plan_url_list(config, units_dir)
    if config.kind == "folder":
        return plan_folder(config, units_dir)
    return plan_webdataset(config)
