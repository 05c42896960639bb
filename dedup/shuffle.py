"""Hash-partitioned shuffles on disk: a frame split by a key into buckets, one bucket read back at a time
(the exact-key and caption-LSH groupings over them are ``dedup.keyjoin``). Pure: files in, files out, no Ray.

A shuffle directory holds, per producing task, Spark's sort-shuffle pair (``IndexShuffleBlockResolver``):
``<part>.arrows``, the task's rows sorted by bucket as consecutive Arrow IPC streams, one per non-empty
bucket in bucket order, and ``<part>.index``, little-endian int64 byte offsets, one more than buckets:
bucket b is bytes ``[off[b], off[b+1])`` of the data file (equal offsets: empty). So a shuffle writes two
files per task, never tasks x buckets, and a reducer of bucket b reads 16 bytes of each task's index
and then exactly bucket b's bytes: its cost is independent of the bucket count (a Parquet footer per
task lists every bucket, ~280 B each, and every reducer parsed every footer: 1.7 GB per reducer at
2,500 tasks x 2,500 buckets). Its memory is bounded by one bucket, never by the run.

The index is the commit: a data file without its index is ignored. A map task reads a batch of input
files (``plan_batches``: consecutive files up to a byte budget). Within a bucket, rows keep the order of
part names, then of their task's input, as a directory of per-bucket files read in name order gave them.
"""

from __future__ import annotations

import math
import os
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from dedup.cluster import PAIRS_SCHEMA
from manifests.io import write_parquet

_SEED = 0x5EED_13  # one seed for every bucket hash of a run: producers and consumers must agree
BUCKET = "_bucket"  # a task's rows tagged with their bucket while it sorts them (never written)
DATA, INDEX = ".arrows", ".index"  # a task's bucket streams, and its (buckets + 1) int64 offsets into them
# zstd (level 1), not lz4 (Spark's default): bench/shuffle_read.py wrote 0.51-0.56x lz4's bytes at
# 5k-40k rows a stream and read a bucket as fast (0.95-1.0x, 40 producers x 40 buckets); bench/scale.py
# shuffled 0.73x the bytes at 1M rows. Only tiny streams (10 rows: 4,000 buckets) write 1.7x slower.
IPC_OPTIONS = ipc.IpcWriteOptions(compression="zstd")
_OFFSET = struct.Struct("<q")
_RANGE = struct.Struct("<qq")


def bucket_count(rows: int, row_bytes: int, bytes_per_bucket: int, override: int | None = None) -> int:
    """Buckets for ``rows`` rows of about ``row_bytes`` each (in memory): ``override`` if given."""
    return override if override is not None else max(1, math.ceil(rows * row_bytes / bytes_per_bucket))


def bucket_of(expr: pl.Expr, buckets: int) -> pl.Expr:
    """The bucket of each value: stable within one Polars version, which all tasks of a run share."""
    return (expr.hash(seed=_SEED) % buckets).cast(pl.UInt32)


def write_buckets(frame: pl.DataFrame, by: pl.Expr, buckets: int, root: Path, part: str) -> int:
    """Write ``frame``'s rows by ``bucket_of(by)`` as ``root/<part>.arrows`` + ``root/<part>.index``, a
    stream per non-empty bucket; returns rows written. Nothing when ``frame`` is empty."""
    if frame.is_empty():
        return 0
    keyed = frame.with_columns(bucket_of(by, buckets).alias(BUCKET)).sort(BUCKET, maintain_order=True)
    runs = keyed[BUCKET].rle()
    _write_indexed(keyed.drop(BUCKET), runs.struct.field("value").to_list(), runs.struct.field("len").to_list(),
                   buckets, root, part)
    return frame.height


def write_bucket(frame: pl.DataFrame, bucket: int, root: Path, part: str) -> int:
    """A reduce task's rows that all belong to ``bucket`` (still keyed as its input was): one part. Its
    index stops after ``bucket``: a reader of a later bucket finds no offsets there, so nothing."""
    if frame.is_empty():
        return 0
    _write_indexed(frame, [bucket], [frame.height], bucket + 1, root, part)
    return frame.height


def _write_indexed(frame: pl.DataFrame, buckets_present: list[int], lengths: list[int], buckets: int,
                   root: Path, part: str) -> None:
    """Rows sorted by bucket (a run of ``lengths[i]`` rows for ``buckets_present[i]``) -> one IPC stream
    per run, then the offsets of every bucket."""
    table = frame.to_arrow()
    ends = np.zeros(buckets + 1, dtype="<i8")  # ends[b + 1]: where bucket b's stream ends
    index = root / f"{part}{INDEX}"
    index.unlink(missing_ok=True)  # a retried task: its old index must not point into its new data
    with _scratch(root / f"{part}{DATA}") as tmp, open(tmp, "wb") as sink:
        start = 0
        for bucket, rows in zip(buckets_present, lengths):
            with ipc.new_stream(sink, table.schema, options=IPC_OPTIONS) as stream:
                stream.write_table(table.slice(start, rows))
            start += rows
            ends[bucket + 1] = sink.tell()
    offsets = np.maximum.accumulate(ends)  # an empty bucket starts and ends where the one before it ended
    # Renamed last: the index commits the part. No fsync either (see ``_scratch``): an OS crash could
    # keep the renamed index and lose data bytes, but it loses the node's tasks and their work directory
    # with it, and a range past the data's end fails loudly in ``_read_stream``, never reads wrong rows.
    with _scratch(index) as tmp:
        tmp.write_bytes(offsets.tobytes())


@contextmanager
def _scratch(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path``, renamed into place once written whole, but not fsynced: a
    shuffle file lives for one step of one phase, a lost machine's files are rewritten by the retried
    task (Ray re-runs it), and an fsync per file would cost a disk flush per task and step for a
    crash that loses the work directory anyway. The rename alone keeps readers from half-written files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def part_files(root: Path) -> list[Path]:
    """A shuffle's committed parts (their index files), in name order (the order a bucket's rows are read in)."""
    return sorted(root.glob(f"*{INDEX}"))


def data_files(root: Path) -> list[Path]:
    """Every data file under ``root`` (any depth): committed shuffle parts, and Parquet files (scratch
    and reduce outputs). A shuffle's cost on a file system or object store, for counting."""
    parts = [p for p in root.rglob(f"*{DATA}") if p.with_suffix(INDEX).exists()]
    return sorted(parts + list(root.rglob("*.parquet")))


def stored_bytes(root: Path) -> int:
    """Bytes of ``data_files(root)``, each part's index included."""
    return sum(f.stat().st_size + (f.with_suffix(INDEX).stat().st_size if f.suffix == DATA else 0)
               for f in data_files(root))


def scan_bucket(root: Path, bucket: int, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """One bucket's rows from every part: 16 bytes of each index, then exactly the bucket's byte range
    of its data file; an empty frame of ``schema`` when no part holds a row of it."""
    tables = []
    for index in part_files(root):
        with open(index, "rb") as f:
            f.seek(bucket * _OFFSET.size)
            pair = f.read(_RANGE.size)
        if len(pair) < _RANGE.size:  # past the index's buckets (``write_bucket``): nothing of this bucket
            continue
        start, end = _RANGE.unpack(pair)
        if end > start:
            tables.append(_read_stream(index.with_suffix(DATA), start, end))
    return _concat(tables, schema)


def scan_parts(root: Path, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """Every part under ``root`` (any depth), every bucket, as one lazy frame."""
    tables = []
    for index in sorted(root.rglob(f"*{INDEX}")):
        offsets = np.frombuffer(index.read_bytes(), dtype="<i8")
        starts = np.unique(offsets)  # each non-empty bucket's stream starts at a distinct offset
        tables += [_read_stream(index.with_suffix(DATA), int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
    return _concat(tables, schema)


def _read_stream(path: Path, start: int, end: int) -> pa.Table:
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    if len(data) != end - start:
        raise ValueError(f"{path}: its index says bytes {start}..{end}, the file ends at {start + len(data)}; "
                         "the shuffle's task must be rerun")
    return ipc.open_stream(pa.py_buffer(data)).read_all()


def _concat(tables: list[pa.Table], schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """Parts in order, as one frame (one conversion: a bucket of many small parts is dominated by it);
    a column one part lacks or holds only nulls of is promoted as Parquet scans did."""
    if not tables:
        return pl.LazyFrame(schema=schema)
    return pl.from_arrow(pa.concat_tables(tables, promote_options="permissive")).lazy()


def plan_batches(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Indices of consecutive items, grouped so that each group's sizes sum to at most ``budget``; an
    item larger than ``budget`` is a group of its own. Order kept: every index once, ascending."""
    batches: list[list[int]] = []
    total = budget + 1  # the first item opens a group
    for i, size in enumerate(sizes):
        if total + size > budget:
            batches.append([])
            total = 0
        batches[-1].append(i)
        total += size
    return batches


def concat(frames: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """One map task's rows from each file of its batch; a column a file lacks is null in its rows."""
    present = [f for f in frames if not f.is_empty()]
    return pl.concat(present, how="diagonal_relaxed") if present else pl.DataFrame()


def write_pairs(pairs: pl.DataFrame, path: Path) -> int:
    if pairs.is_empty():
        return 0
    write_parquet(pairs.select(list(PAIRS_SCHEMA)).cast(PAIRS_SCHEMA).to_arrow(), path)
    return pairs.height
