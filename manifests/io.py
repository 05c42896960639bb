"""Atomic file writes and the Parquet / JSON reads every phase shares."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a trainer running as another user must read it
    try:
        yield tmp_path
        _fsync(tmp_path)  # the rename must never expose a file whose bytes a lost machine never wrote
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@functools.cache
def _umask() -> int:
    """The process umask, read once. Linux shows it in /proc; elsewhere reading it means setting it, which
    could race another thread's file creation, hence the cache."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_json(data: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def read_parquet_files(paths: list[Path], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate Parquet files; an empty list gives an empty table of ``schema``."""
    if not paths:
        if schema is None:
            raise ValueError("no Parquet files to read and no schema to build an empty table")
        return schema.empty_table()
    tables = [pq.read_table(p) for p in paths]
    return pa.concat_tables(tables, promote_options="default")


def parquet_rows(files: list[Path]) -> int:
    """Row count from the Parquet footers, without reading a row (how drivers size work)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def update_run_json(path: Path, **sections: Any) -> dict:
    """Merge ``sections`` into run.json (dict sections are merged one level deep)."""
    data = read_json(path)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    write_json(data, path)
    return data
