"""Fixtures of the scale-out tests: the driver subprocess, free ports, and run checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

import polars as pl
import pytest

from manifests import schema as col
from manifests.layout import RunLayout
from manifests.reexport import read_manifest
from manifests.shards import iter_tar
from pipelines.run.runlock import LOCK_NAME

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


def wait_until(check: Callable[[], bool], proc: subprocess.Popen, timeout_s: float = 180, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"driver exited ({proc.returncode}) before the moment to kill it")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the moment to kill the driver")
        time.sleep(poll_s)


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

    proc.send_signal(signal.SIGSTOP)  # frozen at once: it commits nothing more while its children are listed
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



TIMES = (col.FETCHED_AT,)  # the only columns a rerun or a retried task may change


def manifest_rows(layout: RunLayout) -> pl.DataFrame:
    """The run's manifest without its time columns, in sample_id order: what a fault-free run must equal. The
    input file is named by its file name: a fault-free run may read the same list from another folder."""
    frame = pl.concat([pl.read_parquet(p) for p in layout.manifest_files()], how="diagonal_relaxed")
    frame = frame.with_columns(pl.col(col.SOURCE).str.extract(r"([^/]*)$"))
    return frame.drop([c for c in TIMES if c in frame.columns]).sort(col.SAMPLE_ID)


def shard_contents(layout: RunLayout) -> dict[str, dict[str, object]]:
    """key -> {ext: bytes, or the parsed JSON without its times} over every exported shard."""
    found: dict[str, dict[str, object]] = {}
    for tar in sorted(layout.shards_dir.glob("*.tar")):
        with tarfile.open(tar) as f:
            for member in f.getmembers():
                key, ext = member.name.split(".", 1)
                data = f.extractfile(member).read()
                if ext == "json":
                    data = {k: Path(v).name if k == col.SOURCE and v else v for k, v in json.loads(data).items()
                            if k not in TIMES}
                found.setdefault(key, {})[ext] = data
    return found


def check_same_dataset(run: RunLayout, reference: RunLayout) -> None:
    """The fault matrix's check against a fault-free run: manifest rows (every column but times, so the kept
    set too) and shard contents by key."""
    ours, theirs = manifest_rows(run), manifest_rows(reference)
    assert ours.columns == theirs.columns, (ours.columns, theirs.columns)
    differ = [name for name in ours.columns if not ours[name].equals(theirs[name])]
    assert ours.height == theirs.height and not differ, f"manifest columns differ from the fault-free run: {differ}"
    shards, expected = shard_contents(run), shard_contents(reference)
    assert shards.keys() == expected.keys(), "the shards hold other keys than the fault-free run's"
    assert shards == expected, [k for k in shards if shards[k] != expected[k]][:5]


def tiny_captioner(folder: Path) -> tuple[str, ...]:
    """``--set`` overrides of a tiny random BLIP-2 captioner saved in ``folder`` (seeded: the same weights each
    time), its captions exported, so the caption phase does real work and the shards carry its captions."""
    import torch

    from support.random_models import save_random

    torch.manual_seed(0)
    blip2 = save_random("blip2", folder)
    return ("caption.blip2.enabled=true", f"caption.blip2.model={blip2}", "caption.blip2.generation.max_new_tokens=6",
            "resources.stages.blip2={batch_size: 2, num_cpus: 0.5}", "export.caption_source=caption_blip2")


@contextmanager
def photo_run(out: Path, rows: int, overrides: tuple[str, ...] = (), port: int = 0,
              url_list: Path | None = None, unit_rows: int = 10) -> Iterator[RunLayout]:
    """A finished ``thresher run`` of the corpus's first ``rows`` photos, ``unit_rows`` a unit, 8 a shard, on the
    session's Ray; its origin stays up while the block runs, so a rerun can crawl a unit again. Two runs
    served on the same ``port`` from the same ``url_list`` (written by the first) have the same input, so their
    manifests can be compared."""
    from pipelines.cli.corpus import build_corpus
    from pipelines.cli.demo import demo_config, serve_files, write_url_list
    from pipelines.config import build_config
    from pipelines.run import driver as runner

    files, corpus_rows = build_corpus(0)
    photos = [r for r in corpus_rows if r.path.startswith("/img/")][:rows]
    with serve_files(files, port=port) as base_url:
        url_list = url_list or out / "urls.parquet"
        if not url_list.exists():
            write_url_list(photos, base_url, url_list)
        data = demo_config(url_list, out / "run")
        data["input"]["rows_per_shard"] = unit_rows
        data["export"]["shard_size"] = 8
        runner.run(build_config(data, list(overrides)))
        yield RunLayout.at(out / "run")


# The first 30 photos in two units: test_rerun's new aspect-ratio limit needs the fourth photo (the first
# three and their copies are square), test_corrupt's cells two units.
PHOTO_ROWS, PHOTO_UNIT_ROWS = 30, 15


@pytest.fixture(scope="session")
def photo_reference(ray_session, tmp_path_factory) -> Iterator[RunLayout]:
    """One fault-free ``photo_run`` for every module that needs a plain finished run (test_corrupt, test_rerun):
    it costs a whole run, so it is made once. Its origin stays up for the session, so a copy can crawl a unit
    again. Never changed: a test that reruns it works on a copy (``copy_run``)."""
    with photo_run(tmp_path_factory.mktemp("photo-reference"), PHOTO_ROWS, unit_rows=PHOTO_UNIT_ROWS) as layout:
        yield layout


def copy_run(layout: RunLayout, to: Path) -> RunLayout:
    """A copy of a finished run at ``to`` without its lock: a run directory works wherever it is copied
    (``load_config(copy)`` reads its config at the copy)."""
    return RunLayout.at(shutil.copytree(layout.root, to, ignore=shutil.ignore_patterns(LOCK_NAME)))
