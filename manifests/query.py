"""SQL over a run's manifest with DuckDB: the manifest is the view ``manifest``.

DuckDB scans the Parquet files lazily (projection and filter pushdown, part files in parallel), so a
query that touches two columns of a 10M-row manifest reads only those two columns.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from manifests.io import atomic_path

VIEW = "manifest"
OUT_FORMATS = (".csv", ".parquet")


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def connect(manifest: list[Path]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with ``manifest`` (its part files, or one file) as a view."""
    missing = [p for p in manifest if not p.exists()]
    if missing or not manifest:
        raise FileNotFoundError(f"{missing[0] if missing else 'the manifest'} does not exist; is this a finished run directory?")
    con = duckdb.connect(":memory:")
    files = ", ".join(_quoted(p) for p in manifest)
    con.execute(f"CREATE VIEW {VIEW} AS SELECT * FROM read_parquet([{files}], union_by_name = true)")
    return con


def query(manifest: list[Path], sql: str) -> pa.Table:
    """Run ``sql`` against the manifest; the whole result as an Arrow table."""
    con = connect(manifest)
    try:
        relation = con.sql(sql)
        return pa.table({}) if relation is None else relation.to_arrow_table()
    except duckdb.Error as exc:  # the user's SQL, not our bug: report it as a usage error
        raise ValueError(f"query failed: {exc}") from None
    finally:
        con.close()


def write_result(table: pa.Table, out: Path) -> Path:
    """Write a query result to ``out``; the suffix picks the format (.csv or .parquet)."""
    suffix = out.suffix.lower()
    if suffix not in OUT_FORMATS:
        raise ValueError(f"--out {out}: unknown format {suffix!r}; use one of {', '.join(OUT_FORMATS)}")
    frame = pl.from_arrow(table)
    with atomic_path(out) as tmp:
        if suffix == ".csv":
            _csv_safe(frame).write_csv(tmp)
        else:
            frame.write_parquet(tmp, compression="zstd")
    return out


def _csv_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """CSV has no nested types: lists and structs become their JSON text."""
    nested = [c for c, t in frame.schema.items() if t.is_nested()]
    return frame.with_columns(pl.col(c).map_elements(_json, return_dtype=pl.String) for c in nested) if nested \
        else frame


def _json(value: object) -> str:
    return json.dumps(value.to_list() if isinstance(value, pl.Series) else value, default=str)


def format_table(table: pa.Table, max_rows: int = 50) -> str:
    """A printable table of at most ``max_rows`` rows, with the total row count."""
    frame = pl.from_arrow(table)
    if isinstance(frame, pl.Series):
        frame = frame.to_frame()
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200,
                   tbl_hide_dataframe_shape=True):
        text = str(frame.head(max_rows))
    more = f" (first {max_rows} shown)" if frame.height > max_rows else ""
    return f"{text}\n{frame.height} rows{more}"
