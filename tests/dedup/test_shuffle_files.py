"""A shuffle writes one Parquet file per producing task, a bucket per row group; a bucket's reader gets
exactly that bucket's rows, in producer order, and nothing of the others."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.shuffle import BUCKET, bucket_of, scan_bucket, scan_parts, write_bucket, write_buckets

SCHEMA = {"key": pl.String, "n": pl.Int64, "blob": pl.Binary}

rows = st.tuples(st.one_of(st.none(), st.text(max_size=3)), st.integers(-3, 3), st.binary(max_size=4))
producers = st.lists(st.lists(rows, max_size=40), min_size=1, max_size=4)


def frame(items: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame([list(r) for r in items], schema=SCHEMA, orient="row")


@settings(max_examples=60, deadline=None)
@given(producers, st.integers(1, 9))
def test_every_row_is_read_back_from_exactly_its_bucket(parts, buckets):
    frames = [frame(p) for p in parts]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "shuffle"
        written = [write_buckets(f, pl.col("key"), buckets, root, f"{i:05d}") for i, f in enumerate(frames)]
        assert written == [f.height for f in frames]
        assert len(list(root.glob("*.parquet"))) == sum(1 for f in frames if f.height)  # one file per producer
        for i, f in enumerate(frames):
            if f.height:  # a row group holds one bucket, and its statistics say which: readers prune by them
                meta = pq.ParquetFile(root / f"{i:05d}.parquet").metadata
                stats = [meta.row_group(g).column(meta.schema.names.index(BUCKET)).statistics
                         for g in range(meta.num_row_groups)]
                assert all(s.has_min_max and s.min == s.max for s in stats)
                present = f.select(bucket_of(pl.col("key"), buckets)).to_series().unique().sort()
                assert sorted(s.min for s in stats) == present.to_list()
        keyed = [f.with_columns(bucket_of(pl.col("key"), buckets).alias("b")) for f in frames]
        for b in range(buckets):
            got = scan_bucket(root, b, SCHEMA).collect()
            expected = pl.concat([k.filter(pl.col("b") == b).drop("b") for k in keyed])
            assert got.schema == pl.Schema(SCHEMA)  # an empty bucket too: the schema frame, no _bucket
            assert got.equals(expected)  # same rows, producers in part order, each producer's rows in order
        every = scan_parts(root, SCHEMA).collect()
        assert every.height == sum(written) and every.columns == list(SCHEMA)


def test_no_producer_and_a_single_bucket_writer(tmp_path):
    root = tmp_path / "none"
    assert write_buckets(pl.DataFrame(schema=SCHEMA), pl.col("key"), 4, root, "00000") == 0
    assert not root.exists()  # an empty task writes no file
    empty = scan_bucket(root, 2, SCHEMA).collect()
    assert empty.is_empty() and empty.schema == pl.Schema(SCHEMA)
    labels = frame([("a", 1, b"x"), ("b", 2, b"y")])
    write_bucket(labels, 3, tmp_path / "labels", "00003")
    assert scan_bucket(tmp_path / "labels", 3, SCHEMA).collect().equals(labels)
    assert scan_bucket(tmp_path / "labels", 1, SCHEMA).collect().is_empty()
