"""CSV and TSV URL lists -> tables, one row per record, never two records merged by a quote left open.

A quoted field may hold delimiters, doubled quotes and line breaks (RFC 4180). A quote is taken as left
open, and the list is refused with one line naming the file and the line where the row starts, when its
quoted field

1. runs to the end of the file (Arrow would keep it, silently, as one long value); or
2. spans lines and leaves its row with the wrong number of fields; or
3. spans a line that reads as a row of its own: split at the delimiter it has at least the header's
   number of fields, with a URL (``scheme://``, no spaces) in the URL column's place.

Any other row with the wrong number of fields becomes an ``invalid_input_row`` row naming its line, and
the rest of the file is read. Line numbers are physical (1-based, as an editor shows them): Arrow numbers
records, so each record's line is its number plus the line breaks inside the values before it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from manifests import schema as col

# Appended after the last byte: a quote still open at the end of the file swallows it, so it shows in a value.
SENTINEL = "\x00thresher: end of input\x00"
INPUT_ERROR = "input_error"  # null, or why the row could not be read (every format names it so)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+\Z")
FIX = "close the quote, or double a quote that is part of the text (\"\"), or remove it"


class OpenQuote(ValueError):
    """A quote left open; the message is one line naming the file and the line."""


def delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


class _Sentinel(io.RawIOBase):
    """The file, then a line holding SENTINEL."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.last, self.tail = f, b"\n", None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.f.read(len(buffer)) if self.tail is None else b""
        if data:
            self.last = data[-1:]
        else:
            if self.tail is None:
                self.tail = (b"" if self.last == b"\n" else b"\n") + SENTINEL.encode() + b"\n"
            data, self.tail = self.tail[:len(buffer)], self.tail[len(buffer):]
        buffer[:len(data)] = data
        return len(data)


@dataclass
class _Skipped:
    """Rows Arrow's handler skipped, by record number: the bad ones (their message) and the runaway ones."""

    bad: dict[int, str] = field(default_factory=dict)
    runaway: dict[int, str] = field(default_factory=dict)  # record -> what the open quote did
    blank: set[int] = field(default_factory=set)

    def handler(self, row: Any) -> str:
        if row.text == SENTINEL or row.text == "":
            self.blank.add(row.number)  # the sentinel's own line (the quotes closed) or a blank line
        elif SENTINEL in row.text:
            self.runaway[row.number] = "is never closed (it runs to the end of the file)"
        elif "\n" in row.text:
            self.runaway[row.number] = (f"spans lines and leaves the row with {row.actual_columns} fields where "
                                        f"the header has {row.expected_columns}")
        else:
            self.bad[row.number] = (f"{row.actual_columns} fields where the header has {row.expected_columns}: "
                                    f"{row.text[:120]}")
        return "skip"

    def numbers(self) -> list[int]:
        return sorted([*self.bad, *self.runaway, *self.blank])

    def pop(self, number: int) -> None:
        self.bad.pop(number, None)
        self.runaway.pop(number, None)
        self.blank.discard(number)


def header(path: Path) -> list[str]:
    """The header's column names, as Arrow reads them."""
    options = pacsv.ParseOptions(delimiter=delimiter(path), newlines_in_values=True,
                                 invalid_row_handler=lambda row: "skip")  # rows are judged by csv_tables
    with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20, use_threads=False),
                        parse_options=options) as reader:
        return reader.schema.names


def csv_tables(path: Path, columns: list[str], block_size: int = 1 << 20) -> Iterator[pa.Table]:
    """Tables of ``columns`` (the URL column first) + source_row + input_error, in file order. ``source_row``
    is the 0-based record after the header (a blank line takes a number). Raises ``OpenQuote``."""
    names = header(path)
    skipped = _Skipped()
    options = pacsv.ParseOptions(delimiter=delimiter(path), newlines_in_values=True, ignore_empty_lines=False,
                                 invalid_row_handler=skipped.handler)
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False)
    position = _Position(path, names, columns[0])
    with path.open("rb") as raw, pacsv.open_csv(
            io.BufferedReader(_Sentinel(raw)), convert_options=convert, parse_options=options,
            read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False)) as reader:  # no threads: the
        for batch in reader:  # handler then sees rows in order
            yield position.table(pa.Table.from_batches([batch]), skipped, columns)
    tail = position.table(pa.Table.from_batches([], reader.schema), skipped, columns)
    if tail.num_rows:
        yield tail


class _Position:
    """Record numbers and physical lines across batches."""

    def __init__(self, path: Path, names: list[str], url_col: str) -> None:
        self.path, self.names, self.url_index = path, names, names.index(url_col) if url_col in names else 0
        self.record = 2  # the header is record 1
        self.inner_lines = 0  # line breaks inside the values of every record before ``record``

    def table(self, batch: pa.Table, skipped: _Skipped, columns: list[str]) -> pa.Table:
        n = batch.num_rows
        breaks = _breaks(batch)
        numbers, events = self._numbers(n, skipped)
        before = np.concatenate([[0], np.cumsum(breaks)])  # breaks in this batch's valid records before each

        def line(number: int) -> int:
            return number + self.inner_lines + int(before[np.searchsorted(numbers, number)])

        for number in sorted(skipped.runaway.keys() & set(events)):
            raise OpenQuote(f"input.path: {self.path} line {line(number)}: a quote opened in this row "
                            f"{skipped.runaway[number]}; {FIX}")
        self._check_spans(batch, numbers, breaks, line)
        out = self._rows(batch, numbers, columns)
        bad = [(number, f"{self.path.name} line {line(number)}: {skipped.bad[number]}")
               for number in events if number in skipped.bad]
        for number in events:
            skipped.pop(number)
        self.record += n + len(events)
        self.inner_lines += int(before[-1])
        if bad:
            out = pa.concat_tables([out, _bad_rows(bad, columns)]).sort_by(col.SOURCE_ROW)
        return out

    def _numbers(self, n: int, skipped: _Skipped) -> tuple[np.ndarray, list[int]]:
        """This batch's valid records' numbers, and the skipped records that fall among them (or right after)."""
        events = []
        for number in skipped.numbers():
            if number - self.record - len(events) > n:
                break
            events.append(number)
        every = np.arange(self.record, self.record + n + len(events))
        return every[~np.isin(every, events)], events

    def _check_spans(self, batch: pa.Table, numbers: np.ndarray, breaks: np.ndarray, line: Any) -> None:
        for i in np.flatnonzero(breaks):
            start = line(int(numbers[i]))
            for value in batch.slice(int(i), 1).to_pylist()[0].values():
                if value and "\n" in value:
                    self._check_value(value, start)
                    start += value.count("\n")

    def _check_value(self, value: str, start: int) -> None:
        if SENTINEL in value:
            raise OpenQuote(f"input.path: {self.path} line {start}: a quote opened in this row is never closed "
                            f"(it runs to the end of the file); {FIX}")
        for offset, text in enumerate(value.split("\n")[1:], start=1):
            parts = text.rstrip("\r").split(delimiter(self.path))
            if len(parts) >= len(self.names) and _URL.match(parts[self.url_index].strip()):
                raise OpenQuote(f"input.path: {self.path} line {start}: a quote opened in this row runs on over "
                                f"line {start + offset}, which reads as a row of its own; {FIX}")

    def _rows(self, batch: pa.Table, numbers: np.ndarray, columns: list[str]) -> pa.Table:
        """The valid records as rows; a blank line is a record of empty fields to Arrow (so is a line of
        delimiters only, which holds nothing either): both are skipped, as is the sentinel's own line."""
        table = pa.Table.from_arrays([*(batch.column(c) for c in columns), _int64(numbers - 2),
                                      pa.nulls(batch.num_rows, pa.string())],
                                     names=[*columns, col.SOURCE_ROW, INPUT_ERROR])
        blank = _empty(batch.column(0))
        for column in batch.columns[1:]:
            if not blank.any():
                break
            blank &= _empty(column)
        if len(self.names) == 1 and batch.num_rows and batch.column(0)[-1].as_py() == SENTINEL:
            blank[-1] = True  # the sentinel's line: the last record of the file
        return table.take(_int64(np.flatnonzero(~blank))) if blank.any() else table


def _int64(values: np.ndarray) -> pa.Array:
    """Without pa.array(numpy), which imports pandas (2 s) to ask whether it was given a pandas type."""
    values = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _breaks(batch: pa.Table) -> np.ndarray:
    """Line breaks inside each record's values, from the string buffers (numpy; pyarrow.compute would import
    pandas): the positions of each newline byte, placed between the value offsets."""
    total = np.zeros(batch.num_rows, np.int64)
    for column in batch.columns:
        start = 0
        for chunk in column.chunks:
            offsets = np.frombuffer(chunk.buffers()[1], np.int32)[chunk.offset:chunk.offset + len(chunk) + 1]
            data = np.frombuffer(chunk.buffers()[2] or b"", np.uint8)[offsets[0]:offsets[-1]]
            newlines = np.flatnonzero(data == 10) + offsets[0]
            if newlines.size:
                rows = np.searchsorted(offsets, newlines, side="right") - 1
                total[start:start + len(chunk)] += np.bincount(rows, minlength=len(chunk))
            start += len(chunk)
    return total


def _empty(column: pa.ChunkedArray) -> np.ndarray:
    """Which values are the empty string, from the offsets alone."""
    return np.concatenate([np.diff(np.frombuffer(c.buffers()[1], np.int32)[c.offset:c.offset + len(c) + 1]) == 0
                           for c in column.chunks]) if column.num_chunks else np.zeros(0, bool)


def _bad_rows(bad: list[tuple[int, str]], columns: list[str]) -> pa.Table:
    n = len(bad)
    return pa.Table.from_arrays([*(pa.nulls(n, pa.string()) for _ in columns),
                                 pa.array([number - 2 for number, _ in bad], pa.int64()),
                                 pa.array([message for _, message in bad], pa.string())],
                                names=[*columns, col.SOURCE_ROW, INPUT_ERROR])
