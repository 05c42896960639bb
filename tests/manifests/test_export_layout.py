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
from manifests.export import ExportConfig, shard_sizes, write_sizes
from manifests.export_parts import captions_schema, export_shard, unit_rows, write_manifest_part
from manifests.io import write_json, write_parquet
from manifests.layout import RunLayout
from manifests.shardplan import plan_sizes, spans_by_partition
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


def _run(tmp_path, keep=(True,) * 5) -> RunLayout:
    """A run with one staged tar and its decided part (unit 00000)."""
    layout = RunLayout.at(tmp_path)
    ids = [f"0000{i}" for i in range(len(keep))]
    write_tar(layout.staged_tar(0), [(i, {"jpg": f"img{i}".encode(), "txt": b"t"}) for i in ids])
    decided = pl.DataFrame({col.SAMPLE_ID: ids, col.URL: [f"http://x.invalid/{i}" for i in ids],
                            col.CAPTION: [f"caption {i}" for i in ids], col.STATUS: [col.Status.SUCCESS] * len(ids),
                            col.KEEP: list(keep),
                            col.SHARD: ["ingest/staged/00000.tar"] * len(ids), col.MEMBER: [f"{i}.jpg" for i in ids],
                            col.REJECT_REASONS: [[] for _ in ids], col.EXIF: ['{"Image Make": "X"}'] * len(ids)})
    write_parquet(decided.to_arrow(), layout.decided_part("00000"))
    return layout


def _plan(kept: int, shard_size: int, min_shards: int) -> list:
    return plan_sizes({"00000": kept}, shard_sizes(kept, shard_size, min_shards))


def test_each_shard_has_its_parquet_stats_and_sizes(tmp_path):
    old = os.umask(0o022)
    try:
        layout = _run(tmp_path)
        plan = _plan(5, shard_size=2, min_shards=1)
        out = tmp_path / "shards"
        written = [export_shard(str(tmp_path), str(tmp_path), i, r, pl.Schema(), str(out), ExportConfig())
                   for i, r in enumerate(plan)]
        write_sizes(out, written)
    finally:
        os.umask(old)
    assert json.loads((out / "sizes.json").read_text()) == {"00000.tar": 2, "00001.tar": 2, "00002.tar": 1}
    for index in range(len(plan)):
        name = f"{index:05d}"
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
    assert layout.decided_files()


def test_manifest_gains_export_locations(tmp_path):
    layout = _run(tmp_path, keep=(True, False, True, True, False))
    plan = _plan(3, shard_size=10, min_shards=8)
    assert [sum(r.stop - r.start for r in ranges) for ranges in plan] == [1, 1, 1]  # one shard each, not eight
    spans = spans_by_partition(plan)["00000"]
    write_manifest_part(str(tmp_path), "00000", spans, pl.Schema(), str(layout.manifest_dir))
    located = pl.read_parquet(layout.manifest_part("00000"))
    assert located[col.EXPORT_SHARD].to_list() == ["shards/00000.tar", None, "shards/00001.tar", "shards/00002.tar", None]
    assert located[col.EXPORT_MEMBER].to_list() == ["00000.jpg", None, "00002.jpg", "00003.jpg", None]
    # A part that already has locations (a re-export's source) gets them replaced, not doubled.
    write_parquet(located.to_arrow(), layout.decided_part("00000"))
    write_manifest_part(str(tmp_path), "00000", spans, pl.Schema(), str(layout.manifest_dir))
    assert pl.read_parquet(layout.manifest_part("00000")).columns == located.columns


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


def test_caption_files_of_one_unit_with_a_null_typed_column_are_read_together(tmp_path):
    """A caption block whose captions were all null wrote its column with type null; the unit's rows still
    read, each file brought to the schema unified from every caption file's footer."""
    layout = _run(tmp_path, keep=(True, True, False, True, True))
    where = layout.captions_dir / "unit=00000"
    where.mkdir(parents=True)
    pl.DataFrame({col.SAMPLE_ID: ["00000"], col.CAPTION_LLAVA: [None]}).write_parquet(where / "a.parquet")
    pl.DataFrame({col.SAMPLE_ID: ["00001"], col.CAPTION_LLAVA: ["a dog"]}).write_parquet(where / "b.parquet")
    captions = captions_schema(layout)
    assert captions[col.CAPTION_LLAVA] == pl.String
    rows = unit_rows(layout, "00000", captions)
    assert rows[col.CAPTION_LLAVA].to_list() == [None, "a dog", None, None, None]
