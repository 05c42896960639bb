"""Resume at sample granularity on the session's local Ray: --retry-failed in place, a killed worker, unschedulable stages."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from scaleout_support import check_complete_run
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.schema import Status
from manifests.shards import iter_tar
from pipelines.cli.corpus import build_corpus
from pipelines.cli.demo import demo_config, serve_files, write_url_list
from pipelines.config import ConfigError, build_config
from pipelines.run import driver as runner

ROWS = 40
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus():
    files, rows = build_corpus(0)
    return files, [r for r in rows if r.path.startswith("/img/")][:ROWS]


def _config(tmp_path: Path, rows, base_url: str, overrides: tuple[str, ...] = (), **crawl):
    data = demo_config(write_url_list(rows, base_url, tmp_path / "urls.parquet"), tmp_path / "run")
    data["input"]["rows_per_shard"] = 10
    data["crawl"].update(retries=0, **crawl)
    data["export"]["shard_size"] = 16
    return build_config(data, list(overrides))


def _statuses(layout: RunLayout) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in layout.staged_row_files()]).sort(col.SAMPLE_ID)


def test_retry_failed_refetches_only_retryable_rows_in_place(tmp_path: Path, ray_session, corpus) -> None:
    files, rows = corpus
    failing = {rows[3].path, rows[17].path}
    with serve_files(files, failing=failing) as base_url:
        config = _config(tmp_path, rows, base_url)
        run = runner.prepare(config)
        layout = run.layout
        runner.run_phase(run, "ingest")
        before = _statuses(layout)
        failed = before.filter(pl.col(col.STATUS) == Status.FAILED_TO_DOWNLOAD)[col.SAMPLE_ID].to_list()
        assert len(failed) == sum(r.path in failing for r in rows) >= 2
        untouched_unit = layout.staged_rows(2)
        stamp = untouched_unit.stat().st_mtime_ns
        failing.clear()
        result = runner.run_phase(runner.prepare(config, retry_failed=True), "ingest")

    after = _statuses(layout)
    assert after.height == before.height == len(rows)
    assert result["units_run"] == 2  # units 0 and 1 held the failures
    assert untouched_unit.stat().st_mtime_ns == stamp
    retried = after.filter(pl.col(col.SAMPLE_ID).is_in(failed))
    assert retried[col.STATUS].to_list() == [Status.SUCCESS] * len(failed)
    assert retried[col.ATTEMPTS].to_list() == [2] * len(failed)
    others = [c for c in before.columns]
    assert after.filter(~pl.col(col.SAMPLE_ID).is_in(failed)).select(others).equals(
        before.filter(~pl.col(col.SAMPLE_ID).is_in(failed)).select(others))
    keys = [key for tar in layout.staged_tars() for key, _ in iter_tar(tar)]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(after.filter(pl.col(col.STATUS) == Status.SUCCESS)[col.SAMPLE_ID].to_list())


def _ingest_workers() -> list:
    import psutil

    found = []
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "IngestWorker" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def test_killed_worker_is_restarted_and_counts_stay_exact(tmp_path: Path, ray_session, corpus) -> None:
    files, rows = corpus
    killed: list[int] = []

    def kill_one_worker(layout: RunLayout) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            workers = _ingest_workers()
            if workers and layout.staged_row_files():
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)
            time.sleep(0.05)

    with serve_files(files, delay_s=0.2) as base_url:
        config = _config(tmp_path, rows, base_url, concurrency=1)
        run = runner.prepare(config)
        layout = run.layout
        killer = threading.Thread(target=kill_one_worker, args=(layout,))
        killer.start()
        runner.run_all(run)
        killer.join()

    assert killed, "no ingest worker was found to kill"
    manifest = check_complete_run(layout.root, len(rows))
    assert set(manifest[col.SOURCE_ROW].to_list()) == set(range(len(rows)))


def test_gpu_stage_on_a_cpu_cluster_fails_before_any_work(tmp_path: Path, ray_session, corpus) -> None:
    files, rows = corpus
    gpu = "resources.stages.nsfw={num_gpus: 1, concurrency: 2}"  # the demo's open_nsfw stage
    config = _config(tmp_path, rows, "http://127.0.0.1:9", overrides=(gpu,))
    run = runner.prepare(config)
    layout = run.layout
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"resources.stages.nsfw asks for CPU=[\d.]+, GPU=1 per actor"):
        runner.run_all(run)
    assert time.monotonic() - started < 60
    assert not layout.staged_dir.exists(), "the check must come before ingest starts"
