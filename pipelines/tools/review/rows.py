"""Rows of a run's manifest for the review app, without loading the run.

A row is named by its position in the manifest (parts in ``manifest_files`` order, rows in file order),
the same index as the live decision's masks. A browse query is answered from the columns the live
decision holds (status, keep, scores, each stored reason's rows), so paging through millions of rows
reads nothing; a caption search reads the caption column once per search text. Reading a few rows
reads only the parts that hold them; looking a sample up by id is DuckDB over the part files (every
value bound as a parameter).
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from manifests import schema as col
from pipelines.tools.review.decision import in_order
from pipelines.tools.review.survivors import Repicked

INDEX = "row"
PAGE = 60
CAPTIONS_KEPT = 8  # caption searches kept (a Boolean per row each)


@dataclass(frozen=True)
class Query:
    """A browse filter, as the page sends it; every field optional."""
    status: str | None = None
    reason: str | None = None
    kept: bool | None = None
    caption: str | None = None
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    page: int = 0


class Search:
    """The rows a ``Query`` matches, in manifest order, from what ``live`` (a ``LiveDecision``) holds."""

    def __init__(self, live) -> None:
        self.live = live
        self._captions: OrderedDict[str, pl.Series] = OrderedDict()
        self._lock = threading.Lock()

    def _caption(self, text: str) -> pl.Series:
        needle = text.lower()
        with self._lock:
            if needle not in self._captions:
                # case-insensitive by the regex's case folding: lowercasing 10M captions first costs half again
                found = pl.col(col.CAPTION).str.contains("(?i)" + pl.escape_regex(needle)).fill_null(False)
                self._captions[needle] = in_order(self.live.stored, found).to_series()
                while len(self._captions) > CAPTIONS_KEPT:
                    self._captions.popitem(last=False)
            self._captions.move_to_end(needle)
            return self._captions[needle]

    def rows(self, query: Query) -> np.ndarray:
        live = self.live
        mask = np.ones(len(live.before), dtype=bool)

        def where(condition: pl.Series) -> None:
            mask[:] &= condition.fill_null(False).to_numpy()

        if query.status:
            where(live.column(col.STATUS) == query.status)
        if query.reason:
            listed = np.zeros_like(mask)
            listed[live.with_reason(query.reason)] = True
            mask &= listed
        if query.kept is not None:
            where(live.before == query.kept)
        if query.caption:
            where(self._caption(query.caption))
        for name, (lo, hi) in sorted(query.ranges.items()):
            if name not in live.columns or not live.schema[name].is_numeric():
                raise ValueError(f"no number column {name!r} in this manifest")
            if lo is not None:
                where(live.column(name) >= float(lo))
            if hi is not None:
                where(live.column(name) <= float(hi))
        return np.flatnonzero(mask)


class ManifestRows:
    def __init__(self, parts: list[Path], sizes: list[int]) -> None:
        self.parts, self.sizes = parts, sizes
        self.starts = [0]
        for n in sizes:
            self.starts.append(self.starts[-1] + n)
        self.offset_of = {str(p): s for p, s in zip(parts, self.starts)}
        self.db = duckdb.connect()
        self.source = "read_parquet($files, filename = true, file_row_number = true, union_by_name = true)"

    def sql(self, query: str, params: dict) -> list[tuple]:
        """One query on its own cursor: requests run in threads, and a DuckDB connection serves one at a time."""
        with self.db.cursor() as cursor:
            return cursor.execute(query, params).fetchall()

    @property
    def files(self) -> list[str]:
        return [str(p) for p in self.parts]

    def index_of(self, sample_ids: list[str]) -> dict[str, int]:
        if not sample_ids:
            return {}
        found = self.sql(f'SELECT "{col.SAMPLE_ID}", filename, file_row_number FROM {self.source} '
                         f'WHERE "{col.SAMPLE_ID}" IN (SELECT unnest($ids))', {"files": self.files, "ids": sample_ids})
        return {s: self.offset_of[f] + int(r) for s, f, r in found}

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.starts[-1]:
            raise IndexError(f"row {index} is outside the manifest's {self.starts[-1]} rows")
        part = bisect.bisect_right(self.starts, index) - 1
        return part, index - self.starts[part]

    def rows_at(self, indices: list[int], frames: list[pl.LazyFrame] | Repicked | None = None) -> pl.DataFrame:
        """The rows at ``indices`` (in that order) with an ``INDEX`` column; ``frames``: the parts as a
        decision sees them (re-picked duplicate columns: a list of part frames, or a
        ``Repicked`` that gives stored rows their columns), default the stored parts."""
        if isinstance(frames, Repicked):
            rows = self.rows_at(indices)
            return frames.attach(rows, INDEX) if rows.height else rows
        by_part: dict[int, list[tuple[int, int]]] = {}
        for index in indices:
            part, offset = self.locate(index)
            by_part.setdefault(part, []).append((offset, index))
        reads = []
        for part, wanted in by_part.items():
            frame = frames[part] if frames is not None else pl.scan_parquet(self.parts[part])
            order = {o: i for o, i in wanted}
            reads.append(frame.with_row_index("_offset").filter(pl.col("_offset").is_in(list(order)))
                         .with_columns(pl.col("_offset").replace_strict(order, return_dtype=pl.Int64).alias(INDEX))
                         .drop("_offset"))
        pieces = pl.collect_all(reads)  # the parts read in parallel: a page's rows sit in up to 60 of them
        if not pieces:
            return pl.DataFrame({INDEX: []}, schema={INDEX: pl.Int64})
        rows = pl.concat(pieces, how="diagonal_relaxed")
        position = {index: i for i, index in enumerate(indices)}
        return rows.with_columns(pl.col(INDEX).replace_strict(position, return_dtype=pl.Int64).alias("_p")) \
            .sort("_p").drop("_p")
