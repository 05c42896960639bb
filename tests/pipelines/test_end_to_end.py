"""End to end on the session's local Ray: URL list over loopback, img2dataset-style shards, a folder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import webdataset as wds

from manifests import schema as col
from manifests.layout import RunLayout
from manifests.reexport import read_manifest
from manifests.shards import write_tar
from pipelines.cli.corpus import build_corpus, jpeg, load_photos
from pipelines.cli.demo import demo_config, serve_files, write_url_list
from pipelines.config import build_config
from pipelines.run.driver import run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def url_run(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    files, rows = build_corpus(samples=140, seed=1)
    with serve_files(files) as base_url:
        url_list = write_url_list(rows, base_url, out / "urls.parquet")
        data = demo_config(url_list, out / "run")
        data["input"]["rows_per_shard"] = 50
        data["export"]["shard_size"] = 40
        config = build_config(data)
        stats = run(config)
    return RunLayout.at(out / "run"), pl.read_parquet(url_list), stats


def _shard_samples(layout: RunLayout) -> list[dict]:
    urls = [str(p) for p in sorted(layout.shards_dir.glob("*.tar"))]
    return list(wds.WebDataset(urls, shardshuffle=False))


def test_every_input_row_is_in_the_manifest_exactly_once(url_run):
    layout, inputs, _ = url_run
    manifest = read_manifest(layout.root)
    assert manifest.height == inputs.height
    assert manifest[col.SAMPLE_ID].n_unique() == manifest.height
    assert Counter(manifest[col.URL].to_list()) == Counter(inputs["url"].to_list())
    assert manifest.sort(col.SOURCE_ROW)[col.URL].to_list() == inputs["url"].to_list()
    assert set(manifest[col.STATUS].to_list()) <= set(col.Status.ALL)


def test_failures_are_rows_with_status_and_error(url_run):
    layout, inputs, _ = url_run
    manifest = read_manifest(layout.root).with_columns(pl.Series("kind", inputs["kind"]))
    by_kind = {r["kind"]: r for r in manifest.to_dicts()}
    assert by_kind["not_found"][col.STATUS] == col.Status.FAILED_TO_DOWNLOAD
    assert by_kind["not_found"][col.HTTP_STATUS] == 404
    assert by_kind["not_image"][col.STATUS] == col.Status.NOT_AN_IMAGE
    assert by_kind["zero_bytes"][col.STATUS] == col.Status.NOT_AN_IMAGE
    assert by_kind["truncated"][col.STATUS] == col.Status.FAILED_TO_DECODE
    failed = manifest.filter(pl.col(col.STATUS) != col.Status.SUCCESS)
    assert failed[col.ERROR].null_count() == 0
    assert not failed[col.KEEP].any()
    for row in failed.to_dicts():
        assert col.Reason.for_status(row[col.STATUS]) in row[col.REJECT_REASONS]


def test_successes_record_sizes_hash_and_staged_location(url_run):
    layout, _, _ = url_run
    ok = read_manifest(layout.root).filter(pl.col(col.STATUS) == col.Status.SUCCESS)
    assert ok.height > 0
    for name in (col.SHA256, col.SHARD, col.MEMBER, col.ORIGINAL_WIDTH, col.MIME_TYPE):
        assert ok[name].null_count() == 0, name
    assert set(ok[col.WIDTH].to_list()) == {256} and set(ok[col.HEIGHT].to_list()) == {256}  # border mode


def test_shards_hold_exactly_the_kept_rows(url_run):
    layout, _, _ = url_run
    manifest = read_manifest(layout.root)
    kept = manifest.filter(pl.col(col.KEEP)).sort(col.SAMPLE_ID)
    samples = _shard_samples(layout)
    assert [s["__key__"] for s in samples] == kept[col.SAMPLE_ID].to_list()
    assert [s["txt"].decode() for s in samples] == kept[col.CAPTION].fill_null("").to_list()
    meta = json.loads(samples[0]["json"])
    assert meta[col.SAMPLE_ID] == samples[0]["__key__"] and meta[col.KEEP] is True
    # export.min_shards (default 8) splits a run that fills fewer shards evenly (issue 17)
    assert len(list(layout.shards_dir.glob("*.tar"))) == max(-(-kept.height // 40), min(8, kept.height))


def test_ray_data_reads_the_shards_back(url_run):
    import ray

    layout, _, _ = url_run
    kept = read_manifest(layout.root).filter(pl.col(col.KEEP))
    ds = ray.data.read_webdataset([str(p) for p in sorted(layout.shards_dir.glob("*.tar"))], decoder=None)
    rows = ds.take_all()
    assert sorted(r["__key__"] for r in rows) == sorted(kept[col.SAMPLE_ID].to_list())
    captions = dict(zip(kept[col.SAMPLE_ID].to_list(), kept[col.CAPTION].fill_null("").to_list()))
    assert all(r["txt"].decode() == captions[r["__key__"]] for r in rows)


def test_per_shard_parquet_stats_and_sizes_match_the_tars(url_run):
    import os
    import stat

    layout, _, _ = url_run
    manifest = read_manifest(layout.root)
    sizes = json.loads((layout.shards_dir / "sizes.json").read_text())
    tars = sorted(layout.shards_dir.glob("*.tar"))
    assert sorted(sizes) == [t.name for t in tars] and sum(sizes.values()) == manifest[col.KEEP].sum()
    for tar in tars:
        keys = [s["__key__"] for s in wds.WebDataset(str(tar), shardshuffle=False)]
        rows = pl.read_parquet(tar.with_suffix(".parquet"))
        assert rows["key"].to_list() == keys and sizes[tar.name] == len(keys)
        assert json.loads(tar.with_name(tar.stem + "_stats.json").read_text())["successes"] == len(keys)
    located = manifest.filter(pl.col(col.KEEP))
    assert located[col.EXPORT_SHARD].null_count() == 0 and manifest.filter(~pl.col(col.KEEP))[col.EXPORT_SHARD].null_count() == manifest.height - located.height
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [*layout.manifest_files(), layout.run_json, *tars, *layout.staged_dir.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask & ~0o111, path  # not mkstemp's 0600


def test_training_loaders_read_the_shards(url_run, tmp_path):
    """webdataset with a 2-worker DataLoader, Hugging Face datasets' webdataset builder, and open_clip's sizes.json."""
    import datasets
    import torch

    layout, _, _ = url_run
    kept = sorted(read_manifest(layout.root).filter(pl.col(col.KEEP))[col.SAMPLE_ID].to_list())
    urls = [str(p) for p in sorted(layout.shards_dir.glob("*.tar"))]
    pipeline = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt")
    loaded = list(torch.utils.data.DataLoader(pipeline, num_workers=2, batch_size=None))
    assert sorted(key for key, _, _ in loaded) == kept and loaded[0][1].size == (256, 256)
    hf = datasets.load_dataset("webdataset", data_files={"train": urls}, split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert sorted(hf["__key__"]) == kept and hf[0]["json"]["key"] == hf[0]["__key__"]
    sizes = json.loads((layout.shards_dir / "sizes.json").read_text())
    assert sum(int(sizes[Path(u).name]) for u in urls) == len(kept)  # open_clip's get_dataset_size


def test_run_json_counts_equal_the_manifest(url_run):
    layout, _, stats = url_run
    info = json.loads(layout.run_json.read_text())
    manifest = read_manifest(layout.root)
    assert info["counts"] == stats
    assert info["counts"]["rows"] == manifest.height
    assert info["counts"]["kept"] == manifest[col.KEEP].sum()
    assert info["counts"]["status"] == dict(Counter(manifest[col.STATUS].to_list()))
    reasons = Counter(r for rs in manifest[col.REJECT_REASONS].to_list() for r in rs)
    assert info["counts"]["reject_reasons"] == dict(reasons)
    assert set(info["phases"]) == {"ingest", "score", "dedup", "decide", "caption", "export"}
    assert info["versions"]["ray"] and info["config"]["output_dir"] == str(layout.root)


def test_rerun_resumes_and_changes_only_the_decision(url_run, tmp_path):
    layout, _, _ = url_run
    config = build_config({**__import__("yaml").safe_load(layout.config.read_text())},
                          ["filters.rules.min_image_side=400"])
    before = {p: p.stat().st_mtime_ns for p in layout.staged_dir.iterdir()}
    stats = run(config)  # the loopback server is gone: ingest must be skipped, not redone
    assert {p: p.stat().st_mtime_ns for p in layout.staged_dir.iterdir()} == before
    manifest = read_manifest(layout.root)
    assert stats["kept"] == manifest[col.KEEP].sum()
    ok = manifest.filter(pl.col(col.STATUS) == col.Status.SUCCESS)
    small = ok.filter(pl.min_horizontal(col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT) < 400)
    assert small.height > 0
    assert all(col.Reason.IMAGE_TOO_SMALL in r for r in small[col.REJECT_REASONS].to_list())


def _img2dataset_shards(root: Path) -> list[tuple[str, str]]:
    """Two shards laid out as img2dataset writes them: {key}.jpg, {key}.txt, {key}.json."""
    photos = sorted(load_photos().items())[:6]
    expected = []
    for shard in range(2):
        samples = []
        for i, (name, (img, caption)) in enumerate(photos[shard * 3:(shard + 1) * 3]):
            key = f"{shard:05d}{i:04d}"
            meta = {"url": f"http://example.invalid/{name}.jpg", "caption": caption, "key": key, "status": "success"}
            samples.append((key, {"jpg": jpeg(img), "txt": caption.encode(), "json": json.dumps(meta).encode()}))
            expected.append((key, caption))
        write_tar(root / f"{shard:05d}.tar", samples)
    return expected


def test_ingest_from_img2dataset_shards_keeps_their_keys(ray_session, tmp_path):
    (tmp_path / "wds").mkdir()
    expected = _img2dataset_shards(tmp_path / "wds")
    config = build_config({"output_dir": str(tmp_path / "run"), "input": {"kind": "webdataset",
                                                                           "path": str(tmp_path / "wds")}})
    run(config)
    manifest = read_manifest(tmp_path / "run").sort(col.SAMPLE_ID)
    assert list(zip(manifest[col.SAMPLE_ID], manifest[col.CAPTION])) == expected
    assert manifest[col.URL].to_list()[0] == "http://example.invalid/" + sorted(load_photos())[0] + ".jpg"
    assert (manifest[col.STATUS] == col.Status.SUCCESS).all()


def test_ingest_from_a_folder_with_sidecar_captions(ray_session, tmp_path):
    photos = sorted(load_photos().items())[:4]
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, (img, caption) in photos:
        (folder / f"{name}.jpg").write_bytes(jpeg(img))
        (folder / f"{name}.txt").write_text(caption)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    config = build_config({"output_dir": str(tmp_path / "run"), "input": {"kind": "folder", "path": str(folder)}})
    stats = run(config)
    manifest = read_manifest(tmp_path / "run")
    assert manifest.height == 5
    assert stats["status"] == {col.Status.SUCCESS: 4, col.Status.FAILED_TO_DECODE: 1}
    captions = {r[col.URL].rsplit("/", 1)[1]: r[col.CAPTION] for r in manifest.to_dicts()}
    assert captions == {**{f"{n}.jpg": c for n, (_, c) in photos}, "broken.jpg": None}
