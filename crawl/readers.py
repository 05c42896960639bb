"""URL list files -> record batches of the wanted columns, each row with its real position in the file.

Every batch carries ``source_row`` (the 0-based data row; for CSV the 0-based record after the header,
a blank line counted; for JSON lines and ``.txt`` lists, the 0-based line, so it names the line a user
opens in an editor) and ``input_error`` (null, or why that line could not be read). A malformed JSON line
or a CSV row with the wrong number of fields becomes one such row instead of failing the whole input; a
CSV quote left open fails it (``crawl/csvlist.py``). Memory is bounded by one block, never by the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from crawl.csvlist import INPUT_ERROR, OpenQuote, csv_tables
from manifests import schema as col

BLOCK_BYTES = 8 << 20
FORMATS = {"parquet": (".parquet",), "csv": (".csv", ".tsv"), "jsonl": (".jsonl", ".json"), "txt": (".txt",)}


class InputError(ValueError):
    """The input cannot be read as configured; the message is one line naming the file, column or line."""


def detect_format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    for fmt, suffixes in FORMATS.items():
        if suffix in suffixes:
            return fmt
    raise InputError(f"input.format: cannot tell the format of {path.name!r} from its suffix; "
                     "set input.format to parquet, csv, jsonl or txt")


def read_batches(path: Path, fmt: str, columns: list[str]) -> Iterator[pa.Table]:
    """Tables of ``columns`` + source_row + input_error, in file order."""
    if fmt == "txt":
        yield from _txt_tables(path, columns[0])
    elif fmt == "jsonl":
        yield from _jsonl_tables(path, columns)
    elif fmt == "csv":
        yield from _csv_tables(path, columns)
    else:
        first = 0
        for batch in _columnar_batches(path, fmt, columns):
            yield _with_position(pa.Table.from_batches([batch]), first)
            first += batch.num_rows


def _with_position(table: pa.Table, first: int) -> pa.Table:
    n = table.num_rows
    return (table.append_column(col.SOURCE_ROW, pa.array(range(first, first + n), pa.int64()))
            .append_column(INPUT_ERROR, pa.nulls(n, pa.string())))


def _columnar_batches(path: Path, fmt: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"input.path: {path}: cannot read it as {fmt}: {one_line(exc)}") from None


def _csv_tables(path: Path, columns: list[str]) -> Iterator[pa.Table]:
    """CSV/TSV batches (``crawl/csvlist.py``): a row with the wrong number of fields becomes an
    ``invalid_input_row`` row naming its line; a quote left open is an ``InputError`` naming its line."""
    try:
        yield from csv_tables(path, columns)
    except OpenQuote as exc:
        raise InputError(str(exc)) from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"input.path: {path}: cannot read it as csv: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _lines(path: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(0-based number of the block's first line, block of whole lines)."""
    line = 0
    with path.open("rb") as f:
        while block := f.read(block_bytes):
            block += f.readline()
            yield line, block
            line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)


def _txt_tables(path: Path, url_col: str, block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Table]:
    """One URL per line (img2dataset's ``txt`` input); blank lines are skipped but counted."""
    for first, block in _lines(path, block_bytes):
        numbered = [(first + i, text.strip()) for i, text in enumerate(block.decode("utf-8", "replace").split("\n"))]
        kept = [(i, url) for i, url in numbered if url]
        if kept:
            yield pa.table({url_col: [u for _, u in kept], col.SOURCE_ROW: pa.array([i for i, _ in kept], pa.int64()),
                            INPUT_ERROR: pa.nulls(len(kept), pa.string())})


def _jsonl_tables(path: Path, columns: list[str], block_bytes: int = BLOCK_BYTES) -> Iterator[pa.Table]:
    for first, block in _lines(path, block_bytes):
        table = _fast_jsonl_block(first, block, columns)
        if table is None:  # a bad line somewhere in the block: parse it line by line to find it
            rows = _parse_jsonl_block(path, first, block, columns)
            table = pa.Table.from_pylist(rows, schema=_jsonl_schema(columns)) if rows else None
        if table is not None and table.num_rows:
            yield table


def _fast_jsonl_block(first: int, block: bytes, columns: list[str]) -> pa.Table | None:
    """Arrow's JSON reader on a whole block (the common case), or None when any line does not parse."""
    try:
        parsed = pajson.read_json(pa.py_buffer(block))
        lines = [first + i for i, raw in enumerate(block.split(b"\n")) if raw.strip()]
        if parsed.num_rows != len(lines):
            return None
        arrays = [parsed.column(c).cast(pa.string()) if c in parsed.column_names else pa.nulls(len(lines), pa.string())
                  for c in columns]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    arrays += [pa.array(lines, pa.int64()), pa.nulls(len(lines), pa.string())]
    return pa.Table.from_arrays(arrays, schema=_jsonl_schema(columns))


def _jsonl_schema(columns: list[str]) -> pa.Schema:
    # Values are carried as text: JSON has no schema, and one unit's inferred types must not clash with another's.
    return pa.schema([pa.field(c, pa.string()) for c in columns]
                     + [pa.field(col.SOURCE_ROW, pa.int64()), pa.field(INPUT_ERROR, pa.string())])


def _parse_jsonl_block(path: Path, first: int, block: bytes, columns: list[str]) -> list[dict]:
    rows = []
    for offset, raw in enumerate(block.split(b"\n")):
        if not raw.strip():
            continue
        line = first + offset
        try:
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        except (ValueError, UnicodeDecodeError) as exc:
            rows.append({col.SOURCE_ROW: line, INPUT_ERROR: f"{path.name} line {line + 1}: {one_line(exc)}"})
            continue
        row = {c: _text(value.get(c)) for c in columns}
        rows.append({**row, col.SOURCE_ROW: line, INPUT_ERROR: None})
    return rows


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
