"""Score work units and the URI mirror, without Ray: pure file logic."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from manifests import schema as col
from manifests import storage
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import INGEST_SCHEMA, Status
from pipelines.run import score_units


def _stage_unit(layout: RunLayout, unit: int, ids: list[str], failed: list[str] = ()) -> None:
    shard = layout.relative(layout.staged_tar(unit))
    rows = [{col.SAMPLE_ID: i, col.STATUS: Status.SUCCESS, col.SHARD: shard} for i in ids]
    rows += [{col.SAMPLE_ID: i, col.STATUS: Status.FAILED_TO_DOWNLOAD} for i in failed]
    write_parquet(pa.Table.from_pylist(rows, schema=INGEST_SCHEMA), layout.staged_rows(unit))


def _batch(tar: str, ids: list[str]) -> pa.Table:
    return pa.table({col.SAMPLE_ID: ids, col.PIXEL_HASH: [f"h{i}" for i in ids], score_units.PATH: [tar] * len(ids)})


def test_units_commit_when_complete_and_resume_skips_them(tmp_path: Path) -> None:
    layout = RunLayout.at(tmp_path)
    _stage_unit(layout, 0, ["a", "b", "c"], failed=["x"])
    _stage_unit(layout, 1, ["d", "e"])
    pending = score_units.pending_units(layout, {"v1"})
    assert pending == {"00000": {"a", "b", "c"}, "00001": {"d", "e"}}

    collector = score_units.UnitCollector(layout, pending, "v1")
    collector.add(_batch("/r/ingest/staged/00000.tar", ["a", "b"]))
    collector.add(_batch("/r/ingest/staged/00001.tar", ["d", "e", "zz"]))  # zz: in the tar, not a success row
    assert collector.committed == {"00001"}
    with pytest.raises(RuntimeError, match="00000"):
        collector.finish()  # the run died before unit 0 was complete: nothing of it is written
    assert [p.name for p in layout.score_files()] == ["00001.parquet"]

    assert score_units.pending_units(layout, {"v1"}) == {"00000": {"a", "b", "c"}}
    assert set(score_units.pending_units(layout, {"v2"})) == {"00000", "00001"}  # other stages: all again
    _stage_unit(layout, 1, ["d", "e", "f"])  # restaged by --retry-failed: one more sample
    assert set(score_units.pending_units(layout, {"v1"})) == {"00000", "00001"}


def test_push_mirrors_with_commit_files_last_and_pull_restores(tmp_path: Path, monkeypatch) -> None:
    fs = fsspec.filesystem("memory")
    uri = f"memory://thresher-{tmp_path.name}/run"
    local = tmp_path / "staging"
    for name in ("ingest/staged/00000.tar", "ingest/staged/00000.parquet", "ingest/_DONE", "shards/00000.tar"):
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(name.encode())
    (local / "ingest/staged/.00001.tar.x.tmp").write_bytes(b"half")
    order: list[str] = []
    put = fs.put_file
    monkeypatch.setattr(fs, "put_file", lambda lpath, rpath, **kw: (order.append(Path(rpath).name), put(lpath, rpath)))
    storage.push(local, uri)
    assert order.index("00000.parquet") > order.index("00000.tar") and order[-1] in ("_DONE", "00000.parquet")
    assert not fs.exists(f"thresher-{tmp_path.name}/run/ingest/staged/.00001.tar.x.tmp")

    (local / "shards/00000.tar").unlink()
    storage.push(local, uri)
    assert not fs.exists(f"thresher-{tmp_path.name}/run/shards/00000.tar")

    fresh = tmp_path / "fresh"
    assert storage.pull(uri, fresh) == 3
    assert (fresh / "ingest/_DONE").read_bytes() == b"ingest/_DONE"
    assert storage.push(fresh, uri) == 0  # what was pulled is known to be there


def test_push_waits_out_a_store_that_stops_answering_then_ends_in_one_line(tmp_path: Path, monkeypatch,
                                                                            caplog) -> None:
    """A refused connection is retried with backoff until the store answers; past the budget the push ends in
    StoreUnreachable (one line), and what was uploaded before is not uploaded again by the rerun."""
    fs = fsspec.filesystem("memory")
    uri = f"memory://thresher-{tmp_path.name}/run"
    local = tmp_path / "staging"
    for name in ("a.parquet", "b.parquet", "ingest/_DONE"):
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(name.encode())
    monkeypatch.setattr(storage, "BACKOFF_S", (0.01, 0.04))
    put, tries = fs.put_file, []

    def flaky_put(lpath, rpath, **kw):  # refused twice, answered on the third try, then gone
        tries.append(rpath)
        if len(tries) != 3:
            raise ConnectionRefusedError(111, "Connection refused")
        return put(lpath, rpath)

    monkeypatch.setattr(fs, "put_file", flaky_put)
    monkeypatch.setattr(storage, "RETRY_S", 0.2)
    with pytest.raises(storage.StoreUnreachable) as failed:
        storage.push(local, uri)  # a.parquet after two refusals; b.parquet never
    message = str(failed.value)
    assert "\n" not in message and "uploading" in message and "rerun the same command" in message
    assert "retrying" in caplog.text
    assert fs.exists(f"thresher-{tmp_path.name}/run/a.parquet")
    assert not fs.exists(f"thresher-{tmp_path.name}/run/ingest/_DONE")  # the commit file waits for the data

    monkeypatch.setattr(fs, "put_file", put)
    assert storage.push(local, uri) == 2  # b.parquet and _DONE; a.parquet is known to be there


def test_a_full_local_disk_during_a_download_is_not_waited_out_as_the_store(tmp_path: Path, monkeypatch) -> None:
    """ENOSPC writing the local copy is this machine's volume: raised at once (the full-disk line), not retried
    for two minutes and then blamed on the object store."""
    fs = fsspec.filesystem("memory")
    uri = f"memory://thresher-{tmp_path.name}/run"
    fs.pipe(f"thresher-{tmp_path.name}/run/a.parquet", b"a")
    tries = []

    def full(rpath, lpath, **kw):
        tries.append(rpath)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fs, "get_file", full)
    with pytest.raises(OSError) as failed:
        storage.pull(uri, tmp_path / "local")
    assert failed.value.errno == errno.ENOSPC and not isinstance(failed.value, storage.StoreUnreachable)
    assert len(tries) == 1
