"""A shuffle writes one data file + one offset index per producing task, an IPC stream per non-empty
bucket; a bucket's reader gets exactly that bucket's rows, in producer order, and nothing of the others."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import pyarrow as pa
import pyarrow.ipc as ipc
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.shuffle import bucket_of, scan_bucket, scan_parts, write_bucket, write_buckets

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
        present_parts = [i for i, f in enumerate(frames) if f.height]  # one data file + index per producer
        assert sorted(p.name for p in root.glob("*")) == sorted(f"{i:05d}{x}" for i in present_parts
                                                               for x in (".arrows", ".index"))
        for i in present_parts:  # (buckets + 1) ascending offsets; a non-empty range is one stream of one bucket
            offsets = np.frombuffer((root / f"{i:05d}.index").read_bytes(), dtype="<i8")
            data = (root / f"{i:05d}.arrows").read_bytes()
            assert len(offsets) == buckets + 1 and offsets[0] == 0 and offsets[-1] == len(data)
            assert (np.diff(offsets) >= 0).all()
            b_of = frames[i].select(bucket_of(pl.col("key"), buckets)).to_series()
            for b in range(buckets):
                chunk = data[offsets[b]:offsets[b + 1]]
                rows = ipc.open_stream(pa.py_buffer(chunk)).read_all().num_rows if chunk else 0
                assert rows == (b_of == b).sum()
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
    assert scan_bucket(tmp_path / "labels", 9, SCHEMA).collect().is_empty()  # past its index: nothing


def test_a_data_file_without_its_index_is_not_read(tmp_path):
    labels = frame([("a", 1, b"x"), ("b", 2, b"y")])
    write_buckets(labels, pl.col("key"), 2, tmp_path, "00000")
    write_buckets(labels, pl.col("key"), 2, tmp_path, "00001")
    (tmp_path / "00001.index").unlink()  # its producer died before committing
    both = pl.concat([scan_bucket(tmp_path, b, SCHEMA).collect() for b in range(2)])
    assert both.sort("key").equals(labels)
    assert scan_parts(tmp_path, SCHEMA).collect().sort("key").equals(labels)
    (tmp_path / "00000.arrows").write_bytes(b"")  # truncated under its index: a clear error, not missing rows
    with pytest.raises(ValueError, match="rerun"):
        [scan_bucket(tmp_path, b, SCHEMA).collect() for b in range(2)]
