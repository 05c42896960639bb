"""Check the input before any work starts: one clear line naming the file, the column or the line.

Reads the head of the input (a Parquet footer, a CSV header and first block, the first JSON lines),
so it costs milliseconds on a list of any size, except a CSV or TSV that holds a quote character: that
one is read to the end, so that a quote left open (which would merge the rows after it into one value)
fails here, naming its line, before Ray starts. Other bad rows anywhere become rows with status
``invalid_input_row`` naming their line (a malformed JSON line, a CSV row with the wrong number of fields).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crawl.config import InputConfig
from crawl.csvlist import header
from crawl.readers import InputError, detect_format, one_line, read_batches

HEAD_BYTES = 1 << 20


def check_input(config: InputConfig) -> None:
    """Raise ``InputError`` when the input cannot be read as configured."""
    path = Path(config.path)
    if not path.exists():
        raise InputError(f"input.path: {path} does not exist")
    if config.kind == "url_list":
        _check_list(path, config)
    elif config.kind == "webdataset":
        if not (path.is_file() or any(path.glob("*.tar"))):
            raise InputError(f"input.path: {path} holds no .tar shards (input.kind is webdataset)")
    elif not path.is_dir() or next((p for p in path.rglob("*") if p.is_file()), None) is None:
        raise InputError(f"input.path: {path} is not a folder with files in it (input.kind is folder)")


def _check_list(path: Path, config: InputConfig) -> None:
    if path.is_dir():
        raise InputError(f"input.path: {path} is a folder; a url_list is one file (use input.kind: folder or "
                         "webdataset for folders)")
    if not os.access(path, os.R_OK):
        raise InputError(f"input.path: {path} is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise InputError(f"input.path: {path} is empty (0 bytes)")
    fmt = detect_format(path, config.format)
    wanted = _wanted_columns(config, fmt)
    names = {"parquet": _parquet_columns, "csv": _csv_columns, "jsonl": _jsonl_columns, "txt": _txt_columns}[fmt](path)
    for field, column in wanted:
        if column not in names:
            raise InputError(f"input.{field}: {path} has no column {column!r} (it has {', '.join(sorted(names))}); "
                             f"set input.{field}")
    if fmt == "csv":
        _check_csv_rows(path, config.url_col)


def _wanted_columns(config: InputConfig, fmt: str) -> list[tuple[str, str]]:
    if fmt == "txt":
        return []
    wanted = [("url_col", config.url_col)]
    if config.caption_col:
        wanted.append(("caption_col", config.caption_col))
    return wanted + [("extra_cols", c) for c in config.extra_cols]


def _no_rows(path: Path, what: str = "") -> InputError:
    return InputError(f"input.path: {path} has no rows{what}")


def _parquet_columns(path: Path) -> set[str]:
    try:
        meta = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"input.path: {path} is not a readable Parquet file: {one_line(exc)}") from None
    if meta.metadata.num_rows == 0:
        raise _no_rows(path)
    return set(meta.schema_arrow.names)


def _csv_columns(path: Path) -> set[str]:
    try:
        return set(header(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"input.path: {path} does not parse as CSV: {one_line(exc)}") from None


def _check_csv_rows(path: Path, url_col: str) -> None:
    """A list with no quote character cannot leave one open: its first block tells whether it has rows. One
    with quotes is read to the end here, so a quote left open fails before any work (the cost of one more
    read of the file, ``crawl/csvlist.py`` says how it is judged)."""
    tables = (t for t in read_batches(path, "csv", [url_col]) if t.num_rows)
    if next(tables, None) is None:
        raise _no_rows(path, " (a header only)")
    if _has_quote(path):
        for _ in tables:
            pass


def _has_quote(path: Path) -> bool:
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            if b'"' in chunk:
                return True
    return False


def _head_lines(path: Path) -> list[tuple[int, bytes]]:
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    lines = head.split(b"\n")
    if len(head) == HEAD_BYTES:
        lines = lines[:-1]  # the last one may be cut
    return [(i, raw) for i, raw in enumerate(lines) if raw.strip()]


def _jsonl_columns(path: Path) -> set[str]:
    lines = _head_lines(path)
    if not lines:
        raise _no_rows(path, " (only blank lines)")
    errors = []
    for number, raw in lines[:100]:
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            errors.append(f"line {number + 1}: {one_line(exc)}")
            continue
        if isinstance(value, dict):
            return set(value)
        errors.append(f"line {number + 1}: a JSON {type(value).__name__}, not an object")
    raise InputError(f"input.path: {path} is not JSON lines (one object per line); {errors[0]}")


def _txt_columns(path: Path) -> set[str]:
    if not _head_lines(path):
        raise _no_rows(path, " (only blank lines)")
    return set()
