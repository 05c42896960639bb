"""The export's img2dataset layout without Ray: shard sizes, per-shard Parquet and stats, sizes.json, locations."""

from __future__ import annotations

import json
import os
import stat

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from manifests import schema as col
from manifests.export import (ExportConfig, plan_shards, shard_sizes, with_export_locations, write_export_shard,
                              write_sizes)
from manifests.io import write_json
from manifests.shards import iter_tar, write_tar


@given(st.integers(0, 500), st.integers(1, 64), st.integers(1, 16))
def test_shard_sizes_cover_every_row_and_honour_min_shards(rows, shard_size, min_shards):
    sizes = shard_sizes(rows, shard_size, min_shards)
    assert sum(sizes) == rows and all(s > 0 for s in sizes)
    full = -(-rows // shard_size)
    if full >= min_shards:
        assert sizes == [shard_size] * (rows // shard_size) + ([rows % shard_size] if rows % shard_size else [])
    else:
        assert len(sizes) == min(min_shards, rows) and max(sizes, default=0) - min(sizes, default=0) <= 1


def test_min_shards_defaults_to_eight():
    assert ExportConfig().min_shards == 8 and len(shard_sizes(20, 10_000, ExportConfig().min_shards)) == 8


def _run(tmp_path, n=5):
    ids = [f"0000{i}" for i in range(n)]
    write_tar(tmp_path / "ingest/staged/00000.tar", [(i, {"jpg": f"img{i}".encode(), "txt": b"t"}) for i in ids])
    return pl.DataFrame({col.SAMPLE_ID: ids, col.URL: [f"http://x.invalid/{i}" for i in ids],
                         col.CAPTION: [f"caption {i}" for i in ids], col.KEEP: [True] * n,
                         col.SHARD: ["ingest/staged/00000.tar"] * n, col.MEMBER: [f"{i}.jpg" for i in ids],
                         col.REJECT_REASONS: [[] for _ in ids], col.EXIF: ['{"Image Make": "X"}'] * n})


def test_each_shard_has_its_parquet_stats_and_sizes(tmp_path):
    old = os.umask(0o022)
    try:
        manifest = _run(tmp_path)
        shards = plan_shards(manifest, shard_size=2, min_shards=1)
        out = tmp_path / "shards"
        written = [write_export_shard(s, tmp_path, out, ExportConfig()) for s in shards]
        write_sizes(out, written)
    finally:
        os.umask(old)
    assert json.loads((out / "sizes.json").read_text()) == {"00000.tar": 2, "00001.tar": 2, "00002.tar": 1}
    for shard in shards:
        name = f"{shard.index:05d}"
        members = [key for key, _ in iter_tar(out / f"{name}.tar")]
        table = pq.read_table(out / f"{name}.parquet")
        assert table.column("key").to_pylist() == members == table.column(col.SAMPLE_ID).to_pylist()
        assert table.column(col.EXPORT_SHARD).to_pylist() == [f"shards/{name}.tar"] * len(members)
        stats = json.loads((out / f"{name}_stats.json").read_text())
        assert stats["count"] == stats["successes"] == len(members) and stats["status_dict"] == {"success": len(members)}
    sample = next(iter_tar(out / "00000.tar"))[1]
    meta = json.loads(sample["json"])
    assert meta["key"] == "00000" and meta[col.URL] == "http://x.invalid/00000" and meta[col.EXIF]
    assert meta[col.EXPORT_MEMBER] == "00000.jpg" and sample["jpg"] == b"img00000"
    for path in out.iterdir():  # created with the process umask, not mkstemp's 0600
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_manifest_gains_export_locations(tmp_path):
    manifest = _run(tmp_path).with_columns(pl.Series(col.KEEP, [True, False, True, True, False]))
    shards = plan_shards(manifest.filter(pl.col(col.KEEP)), shard_size=10, min_shards=8)
    assert [len(s.rows) for s in shards] == [1, 1, 1]  # three kept rows: one shard each, not eight
    located = with_export_locations(manifest, shards)
    assert located[col.EXPORT_SHARD].to_list() == ["shards/00000.tar", None, "shards/00001.tar", "shards/00002.tar", None]
    assert located[col.EXPORT_MEMBER].to_list()[0] == "00000.jpg"
    assert with_export_locations(located, shards).columns == located.columns  # a re-export replaces them


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        from manifests import io
        io._umask.cache_clear()
        write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
        io._umask.cache_clear()
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o666 & ~mask
