"""One schema for a dataset of part files written by independent tasks.

A task that sees only its own rows cannot know a column's type when every value it holds is null
(Arrow writes type ``null``), and a part may lack a column another part has. Readers of the whole
dataset (``pl.scan_parquet`` over the parts, DuckDB) need one schema, so the driver unifies the
schemas the tasks report (footers, never rows) and the few parts that differ are rewritten.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from manifests.io import write_parquet


def unified(schemas: list[pl.Schema]) -> pl.Schema:
    """Columns in order of first appearance; each with its first non-null type."""
    out: dict[str, pl.DataType] = {}
    for schema in schemas:
        for name, dtype in schema.items():
            if name not in out or out[name] == pl.Null:
                out[name] = dtype
    return pl.Schema(out)


def file_schemas(files: list[Path]) -> pl.Schema:
    """The unified schema of Parquet files, from their footers."""
    return unified([pl.read_parquet_schema(f) for f in files])


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns, in its order and types (missing columns null)."""
    have = frame.schema
    return frame.select([(pl.col(n) if n in have else pl.lit(None)).cast(t).alias(n) for n, t in schema.items()])


def conform_file(path: str, schema: pl.Schema) -> None:
    """Task: rewrite one part to ``schema`` (only called for the parts whose schema differs)."""
    write_parquet(conform(pl.read_parquet(path), schema).to_arrow(), Path(path))
