"""Inputs -> work units of at most ``rows_per_shard`` rows, read in bounded chunks.

URL lists and folders are split into small Parquet unit files (memory never holds more than one
chunk); WebDataset inputs use each tar as a unit as it is. Sample ids follow img2dataset's keys:
the unit index zero-padded to 5 digits, then the row's index inside the unit zero-padded to
ceil(log10(rows_per_shard)) digits, so a URL list ingested by both tools gets the same keys.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from crawl.config import InputConfig
from crawl.image import sniff_mime
from crawl.inputcheck import check_input
from crawl.readers import INPUT_ERROR, InputError, detect_format, read_batches
from manifests import schema as col
from manifests.io import write_parquet

log = logging.getLogger(__name__)

SHARD_DIGITS = 5
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
UNIT_SCHEMA = pa.schema(
    [
        pa.field(col.SAMPLE_ID, pa.string()),
        pa.field(col.URL, pa.string()),
        pa.field(col.CAPTION, pa.string()),
        pa.field(col.SOURCE, pa.string()),
        pa.field(col.SOURCE_ROW, pa.int64()),
        pa.field(INPUT_ERROR, pa.string()),
    ]
)
SIDECAR_SUFFIXES = (".txt", ".json")


@dataclass(frozen=True)
class Unit:
    """One piece of ingest work: rows of a unit Parquet file, or one input tar."""

    index: int
    kind: str  # "url_list" | "folder" | "webdataset"
    path: str
    extra_cols: tuple[str, ...] = ()  # carried from an input tar's metadata (url lists carry theirs in the unit file)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_cols", tuple(self.extra_cols))  # a list or array after a trip through Ray


def sample_key(unit: int, row: int, rows_per_shard: int) -> str:
    digits = max(1, math.ceil(math.log10(rows_per_shard))) if rows_per_shard > 1 else 1
    return f"{unit:0{SHARD_DIGITS}d}{row:0{digits}d}"


def _chunks(rows: Iterator[pa.Table], size: int) -> Iterator[pa.Table]:
    pending: list[pa.Table] = []
    count = 0
    for batch in rows:
        while batch.num_rows:
            take = min(size - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == size:
                yield pa.concat_tables(pending)
                pending, count = [], 0
    if count:
        yield pa.concat_tables(pending)


def _write_unit(units_dir: Path, index: int, chunk: pa.Table, urls: list, captions: list, source: str,
                rows_per_shard: int, extra_cols: list[str]) -> Unit:
    n = len(urls)
    table = pa.table(
        {
            col.SAMPLE_ID: [sample_key(index, i, rows_per_shard) for i in range(n)],
            col.URL: urls,
            col.CAPTION: captions,
            col.SOURCE: [source] * n,
            col.SOURCE_ROW: chunk.column(col.SOURCE_ROW),
            INPUT_ERROR: chunk.column(INPUT_ERROR),
        },
        schema=UNIT_SCHEMA,
    )
    for name in extra_cols:  # carried as they are (img2dataset's save_additional_columns)
        table = table.append_column(name, chunk.column(name))
    path = units_dir / f"{index:05d}.parquet"
    write_parquet(table, path)
    return Unit(index, "url_list", str(path))


def _captions(chunk: pa.Table, caption_col: str | None) -> list:
    """The caption column; a null cell of a caption column is an empty caption (judged by the caption rules),
    while a list without a caption column gives null: no caption source, so caption rules skip the row."""
    if not caption_col:
        return [None] * chunk.num_rows
    return [c if c is not None or e is not None else ""
            for c, e in zip(chunk.column(caption_col).cast(pa.string()).to_pylist(),
                            chunk.column(INPUT_ERROR).to_pylist())]


def input_columns(config: InputConfig, fmt: str) -> list[str]:
    if fmt == "txt":
        return [config.url_col]
    return list(dict.fromkeys([config.url_col] + ([config.caption_col] if config.caption_col else [])
                              + list(config.extra_cols)))


def plan_url_list(config: InputConfig, units_dir: Path) -> list[Unit]:
    path = Path(config.path)
    fmt = detect_format(path, config.format)
    caption_col = None if fmt == "txt" else config.caption_col
    extra = [] if fmt == "txt" else [c for c in config.extra_cols if c not in (config.url_col, caption_col)]
    units = []
    for index, chunk in enumerate(_chunks(read_batches(path, fmt, input_columns(config, fmt)), config.rows_per_shard)):
        urls = chunk.column(config.url_col).cast(pa.string()).to_pylist()
        units.append(_write_unit(units_dir, index, chunk, urls, _captions(chunk, caption_col), str(path),
                                 config.rows_per_shard, extra))
        pa.default_memory_pool().release_unused()  # hand freed chunk buffers back, so RSS tracks one chunk
    if not units:
        raise InputError(f"input.path: {path} has no rows")
    return units


def folder_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(images, skipped): a file is an image by its suffix or, whatever its name, by its first bytes,
    as the crawl judges a download; caption sidecars are neither."""
    images, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.suffix.lower() in IMAGE_SUFFIXES or _looks_like_image(path):
            images.append(path)
        elif not (path.suffix.lower() in SIDECAR_SUFFIXES and _has_image_sibling(path)):
            skipped.append(path)
    return images, skipped


def _looks_like_image(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return sniff_mime(f.read(16)) is not None
    except OSError:
        return False


def _has_image_sibling(path: Path) -> bool:
    return any(path.with_suffix(s).exists() or path.with_suffix(s.upper()).exists() for s in IMAGE_SUFFIXES)


def plan_folder(config: InputConfig, units_dir: Path) -> list[Unit]:
    root = Path(config.path)
    files, skipped = folder_files(root)
    if skipped:
        log.warning("input %s: skipped %d file(s) that are not images (e.g. %s)", root, len(skipped),
                    ", ".join(p.relative_to(root).as_posix() for p in skipped[:3]))
    if not files:
        raise InputError(f"input.path: folder {root} holds no image files")
    units = []
    for index, start in enumerate(range(0, len(files), config.rows_per_shard)):
        chunk = files[start:start + config.rows_per_shard]
        positions = pa.table({col.SOURCE_ROW: pa.array(range(start, start + len(chunk)), pa.int64()),
                              INPUT_ERROR: pa.nulls(len(chunk), pa.string())})
        unit = _write_unit(units_dir, index, positions, [p.resolve().as_uri() for p in chunk],
                           [_sidecar_caption(p) for p in chunk], str(root), config.rows_per_shard, [])
        units.append(Unit(unit.index, "folder", unit.path))
    return units


def _sidecar_caption(image: Path) -> str | None:
    txt = image.with_suffix(".txt")
    return txt.read_text(encoding="utf-8", errors="replace").strip() if txt.exists() else None


def plan_webdataset(config: InputConfig) -> list[Unit]:
    root = Path(config.path)
    tars = [root] if root.is_file() else sorted(root.glob("*.tar"))
    if not tars:
        raise InputError(f"input.path: {root} holds no .tar shards (input.kind is webdataset)")
    return [Unit(i, "webdataset", str(p), tuple(config.extra_cols)) for i, p in enumerate(tars)]


def plan_units(config: InputConfig, units_dir: Path) -> list[Unit]:
    """Split the input into work units. Raises ``InputError`` before any work when the input is missing or malformed."""
    check_input(config)
    if config.kind == "url_list":
        return plan_url_list(config, units_dir)
    if config.kind == "folder":
        return plan_folder(config, units_dir)
    return plan_webdataset(config)
