"""img2dataset's real output as Thresher's input: the same URL list through the real img2dataset 1.47,
then through Thresher; sizes, sha256 and EXIF of the originals, failure rows, an extra column and the keys
must all come through, and images already at the target size must be copied, not re-encoded.

img2dataset runs from its own venv (``.venv-img2dataset``, gitignored, shared with
bench/crawl_vs_img2dataset.py): it pins ``webdataset<0.3``, which would downgrade ours. Creating it takes
about 20 s with a warm pip cache; when it cannot be installed the test is skipped and says why.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from manifests import schema as col
from manifests.layout import RunLayout
from manifests.reexport import read_manifest
from manifests.shards import iter_tar
from pipelines.cli.corpus import load_photos
from pipelines.cli.demo import serve_files
from pipelines.config import build_config
from pipelines.run.driver import prepare, run, run_phase

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv-img2dataset"


def img2dataset_exe() -> Path:
    exe = VENV / "bin" / "img2dataset"
    if exe.exists():
        return exe
    try:  # no pip of its own, no byte-compiling of every module: 7 s of CPU, not 32 s
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)], check=True, capture_output=True,
                       timeout=300)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(VENV / "bin" / "python"), "install", "-q",
                        "--no-compile", "img2dataset==1.47.0"], check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"img2dataset could not be installed into {VENV} ({type(exc).__name__}: {exc}); "
                    "this test needs the real img2dataset")
    return exe


def _served(photos: list) -> tuple[dict[str, bytes], list[dict]]:
    files, rows = {}, []
    for i, (name, (img, caption)) in enumerate(photos):
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x010F] = f"ThresherCam {i}"  # Make
        img.save(buf, format="JPEG", quality=90, exif=exif.tobytes())
        files[f"/{name}.jpg"] = buf.getvalue()
        rows.append({"path": f"/{name}.jpg", "caption": caption, "license": f"cc-by-{i}", "size": img.size})
    files["/page.jpg"] = b"<html>not an image</html>"
    rows.append({"path": "/page.jpg", "caption": "a web page", "license": "none", "size": None})
    rows.append({"path": "/missing.jpg", "caption": "gone", "license": "none", "size": None})
    return files, rows


@pytest.fixture(scope="module")
def i2d_run(ray_session, tmp_path_factory):
    exe = img2dataset_exe()
    out = tmp_path_factory.mktemp("i2d")
    files, rows = _served(sorted(load_photos().items())[:5])
    with serve_files(files) as base:
        urls = [base + r["path"] for r in rows]
        pq.write_table(pa.table({"url": urls, "caption": [r["caption"] for r in rows],
                                 "license": [r["license"] for r in rows]}), out / "urls.parquet")
        env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
        subprocess.run([str(exe), "--url_list", str(out / "urls.parquet"), "--input_format", "parquet",
                        "--url_col", "url", "--caption_col", "caption", "--save_additional_columns", '["license"]',
                        "--output_format", "webdataset", "--output_folder", str(out / "i2d"),
                        "--image_size", "256", "--resize_mode", "border", "--processes_count", "1",
                        "--thread_count", "4", "--number_sample_per_shard", "4", "--retries", "0",
                        "--enable_wandb", "False", "--distributor", "multiprocessing"],
                       check=True, capture_output=True, env=env, timeout=300)
        ours = build_config({"output_dir": str(out / "ours"), "crawl": {"image_size": 256, "resize_mode": "border"},
                             "input": {"path": str(out / "urls.parquet"), "url_col": "url",
                                       "caption_col": "caption", "rows_per_shard": 4}})
        run_phase(prepare(ours), "ingest")  # the same URL list through our crawl, same rows per shard
    config = build_config({"output_dir": str(out / "run"),
                           "input": {"kind": "webdataset", "path": str(out / "i2d"), "extra_cols": ["license"]},
                           "crawl": {"image_size": 256, "resize_mode": "border"}})
    run(config)
    by_url = {base + r["path"]: {**r, "sha256": hashlib.sha256(files[r["path"]]).hexdigest()
                                 if r["path"] in files else None} for r in rows}
    return out, RunLayout.at(out / "run"), by_url


def _i2d_rows(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((out / "i2d").glob("*.parquet"))], how="diagonal_relaxed")


def test_every_img2dataset_row_arrives_with_its_key_and_status(i2d_run):
    out, layout, by_url = i2d_run
    manifest = read_manifest(layout.root)
    theirs = _i2d_rows(out)
    assert manifest.height == theirs.height == len(by_url)
    assert sorted(manifest[col.SAMPLE_ID].to_list()) == sorted(theirs["key"].to_list())
    status = dict(zip(manifest[col.URL].to_list(), manifest[col.STATUS].to_list()))
    assert status[next(u for u in by_url if u.endswith("/missing.jpg"))] == col.Status.FAILED_TO_DOWNLOAD
    assert status[next(u for u in by_url if u.endswith("/page.jpg"))] == col.Status.FAILED_TO_RESIZE
    failed = manifest.filter(pl.col(col.STATUS) != col.Status.SUCCESS)
    assert failed[col.ERROR].null_count() == 0 and not failed[col.KEEP].any()


def test_original_sizes_hash_exif_and_extra_columns_come_from_img2dataset(i2d_run):
    _, layout, by_url = i2d_run
    ok = read_manifest(layout.root).filter(pl.col(col.STATUS) == col.Status.SUCCESS)
    assert ok.height == len(by_url) - 2
    for row in ok.iter_rows(named=True):
        source = by_url[row[col.URL]]
        assert (row[col.ORIGINAL_WIDTH], row[col.ORIGINAL_HEIGHT]) == source["size"]  # not the 256 px copy
        assert row[col.SHA256] == source["sha256"]  # of the original download
        assert "ThresherCam" in row[col.EXIF] and row["license"] == source["license"]
        assert (row[col.WIDTH], row[col.HEIGHT]) == (256, 256)


def test_exported_samples_are_img2dataset_bytes_with_license_in_json(i2d_run):
    out, layout, by_url = i2d_run
    theirs = {key: members["jpg"] for tar in sorted((out / "i2d").glob("*.tar")) for key, members in iter_tar(tar)}
    exported = [(key, members) for tar in sorted(layout.shards_dir.glob("*.tar")) for key, members in iter_tar(tar)]
    assert len(exported) == len(by_url) - 2  # every photo is kept: originals are >= 300 px
    for key, members in exported:
        assert members["jpg"] == theirs[key]  # already 256 px border: copied, not re-encoded
        meta = json.loads(members["json"])
        assert meta["key"] == key and meta["license"] == by_url[meta[col.URL]]["license"]
        assert meta[col.SHA256] == by_url[meta[col.URL]]["sha256"] and "ThresherCam" in meta[col.EXIF]


def test_a_url_list_crawled_by_both_tools_gets_the_same_keys(i2d_run):
    out, _, by_url = i2d_run
    theirs = _i2d_rows(out)
    ours = pl.concat([pl.read_parquet(p) for p in RunLayout.at(out / "ours").staged_row_files()])
    assert ours.height == theirs.height == len(by_url)
    assert dict(zip(ours[col.URL].to_list(), ours[col.SAMPLE_ID].to_list())) == \
        dict(zip(theirs["url"].to_list(), theirs["key"].to_list()))
