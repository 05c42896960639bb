"""A unit of faulty URLs -> a staged tar and exactly one manifest row per input row; inputs read in chunks."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from crawl_support import crawl, fast_config
from faultserver import photo_jpeg

from crawl.config import InputConfig
from crawl.ingest import ingest_unit
from crawl.sources import plan_units
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.schema import Status
from manifests.shards import iter_tar

PATHS = ["/ok.jpg", "/404", "/page.html", "/truncated.jpg", "/noai.jpg", "/redirect/2", "/empty.jpg", "/ok.jpg"]


def test_every_row_lands_once_with_its_columns(server, tmp_path: Path) -> None:
    urls = [server.url(p) for p in PATHS] + [None, "mailto:x@example.com"]
    pq.write_table(pa.table({"url": urls, "caption": [f"c{i}" for i in range(len(urls))]}), tmp_path / "in.parquet")
    units = plan_units(InputConfig(path=str(tmp_path / "in.parquet"), rows_per_shard=4), tmp_path / "units")
    layout = RunLayout.at(str(tmp_path / "run"))
    told: list[str] = []  # each row's status as it is decided: what the driver's progress in rows counts
    for unit in units:
        ingest_unit(unit, fast_config(), layout, on_row=told.append)
    rows = pa.concat_tables([pq.read_table(layout.staged_rows(u.index)) for u in units]).to_pylist()
    assert sorted(told) == sorted(r[col.STATUS] for r in rows)
    assert [r[col.SOURCE_ROW] for r in rows] == list(range(len(urls)))
    assert [r[col.STATUS] for r in rows] == [
        Status.SUCCESS, Status.FAILED_TO_DOWNLOAD, Status.NOT_AN_IMAGE, Status.FAILED_TO_DECODE,
        Status.DISALLOWED_BY_ROBOTS, Status.SUCCESS, Status.NOT_AN_IMAGE, Status.SUCCESS,
        Status.INVALID_URL, Status.INVALID_URL]
    staged = {key: members for u in units for key, members in iter_tar(layout.staged_tar(u.index))}
    ok = [r for r in rows if r[col.STATUS] == Status.SUCCESS]
    assert sorted(staged) == sorted(r[col.SAMPLE_ID] for r in ok)
    for r in ok:
        assert r[col.MEMBER] == f"{r[col.SAMPLE_ID]}.jpg" and r[col.SHARD].endswith(".tar")
        assert staged[r[col.SAMPLE_ID]]["txt"].decode() == r[col.CAPTION]
    assert rows[0][col.SHA256] == rows[7][col.SHA256]  # the same bytes, fetched twice


def test_webdataset_and_folder_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photo_jpeg())
    (folder / "a.txt").write_text("a caption")
    (folder / "b.jpg").write_bytes(b"not really a jpeg")
    units = plan_units(InputConfig(kind="folder", path=str(folder)), tmp_path / "units")
    layout = RunLayout.at(str(tmp_path / "run"))
    told: list[str] = []
    summary = ingest_unit(units[0], fast_config(), layout, on_row=told.append)
    assert summary["status"] == {Status.SUCCESS: 1, Status.NOT_AN_IMAGE: 1} and len(told) == 2
    tar_unit = plan_units(InputConfig(kind="webdataset", path=str(layout.staged_tar(0))), tmp_path / "u2")[0]
    summary = ingest_unit(tar_unit, fast_config(), RunLayout.at(str(tmp_path / "run2")), on_row=told.append)
    assert summary["status"] == {Status.SUCCESS: 1} and told[2:] == [Status.SUCCESS]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_url_lists_are_split_in_bounded_units(tmp_path: Path, fmt: str) -> None:
    n = 25_000
    urls = [f"http://example.invalid/{i}.jpg" for i in range(n)]
    path = tmp_path / f"urls.{fmt}"
    if fmt == "csv":
        path.write_text("url,caption\n" + "".join(f"{u},cap {i}\n" for i, u in enumerate(urls)))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"url": u, "caption": f"cap {i}"}) + "\n" for i, u in enumerate(urls)))
    else:
        pq.write_table(pa.table({"url": urls, "caption": [f"cap {i}" for i in range(n)]}), path)
    units = plan_units(InputConfig(path=str(path), rows_per_shard=10_000), tmp_path / "units")
    tables = [pq.read_table(u.path) for u in units]
    assert [t.num_rows for t in tables] == [10_000, 10_000, 5_000]
    merged = pa.concat_tables(tables)
    assert merged.column(col.URL).to_pylist() == urls
    assert merged.column(col.SOURCE_ROW).to_pylist() == list(range(n))


def _crawl_in_child(url: str, out) -> None:
    rows = crawl([url], fast_config())
    out.put(rows[0][col.STATUS])


def test_a_forked_worker_gets_its_own_decode_threads(server) -> None:
    """A process pool forked after the parent staged images must not wait on the parent's dead threads."""
    import multiprocessing as mp

    assert crawl([server.url("/ok.jpg")], fast_config())[0][col.STATUS] == Status.SUCCESS
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_crawl_in_child, args=(server.url("/ok.jpg"), out))
    child.start()
    child.join(timeout=30)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and out.get(timeout=1) == Status.SUCCESS
