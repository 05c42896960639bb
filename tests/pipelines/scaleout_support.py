"""Fixtures of the scale-out tests: the driver subprocess, free ports, and run checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

import polars as pl

from manifests.reexport import read_manifest
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.shards import iter_tar

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.py"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def node_env() -> dict[str, str]:
    """Environment of a driver or Ray node process: the checkout and this folder importable, loopback-only Ray."""
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{HERE}", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0"}


def start_driver(work: Path, port: int, *extra: str, prefix: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / f"driver-{time.monotonic_ns()}.log", "w")
    cmd = [*prefix, sys.executable, str(DRIVER), "--work", str(work), "--port", str(port), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=env or node_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_until(check: Callable[[], bool], proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"driver exited ({proc.returncode}) before the moment to kill it")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the moment to kill the driver")
        time.sleep(0.1)


def processes_named(procs: list, name: str) -> list:
    """The processes among ``procs`` whose command line holds ``name`` (Ray titles an actor's process after it)."""
    import psutil

    found = []
    for proc in procs:
        try:
            if name in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # exited while we looked
            continue
    return found


def descendants(proc: subprocess.Popen) -> list:
    import psutil

    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def crash(proc: subprocess.Popen) -> set[int]:
    """kill -9 the driver, then the local Ray it started (what a lost machine or pod looks like); returns the
    ids of the Ray processes that were alive and were killed."""
    import psutil

    children = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.wait()
    killed = set()
    for child in children:
        try:
            child.kill()
            killed.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(children, timeout=20)
    return killed


def check_complete_run(root: Path, input_rows: int) -> pl.DataFrame:
    """Every input row in the manifest exactly once; the shards hold exactly the kept rows, each once."""
    layout = RunLayout.at(root)
    manifest = read_manifest(layout.root)
    assert manifest.height == input_rows
    assert manifest[col.SAMPLE_ID].n_unique() == input_rows
    assert sorted(manifest[col.SOURCE_ROW].to_list()) == list(range(input_rows))
    keys = [key for tar in sorted(layout.shards_dir.glob("*.tar")) for key, _ in iter_tar(tar)]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(manifest.filter(pl.col(col.KEEP))[col.SAMPLE_ID].to_list())
    return manifest



@contextmanager
def photo_run(out: Path, rows: int) -> Iterator[RunLayout]:
    """A finished ``thresher run`` of the corpus's first ``rows`` photos, 10 rows a unit, 8 a shard, on the
    session's Ray; its origin stays up while the block runs, so a rerun can crawl a unit again."""
    from pipelines import run as runner
    from pipelines.config import build_config
    from pipelines.corpus import build_corpus
    from pipelines.demo import demo_config, serve_files, write_url_list

    files, corpus_rows = build_corpus(0)
    photos = [r for r in corpus_rows if r.path.startswith("/img/")][:rows]
    with serve_files(files) as base_url:
        data = demo_config(write_url_list(photos, base_url, out / "urls.parquet"), out / "run")
        data["input"]["rows_per_shard"] = 10
        data["export"]["shard_size"] = 8
        runner.run(build_config(data))
        yield RunLayout.at(out / "run")
