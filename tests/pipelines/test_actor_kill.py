"""Fault cell "a model actor killed mid-batch": kill -9 the process of a score actor (open_nsfw) and of a caption
actor (a tiny random BLIP-2) while it runs a batch; Ray restarts the actor and retries the batch, the run
finishes by itself, and its dataset equals a fault-free run's (manifest rows, kept set, shard contents by key)
with every unit scored once.

The restart is Ray Data's: its actor pools ask for ``max_restarts=-1, max_task_retries=-1`` unless a stage
sets them (``pipelines/run/cluster.py``). With ``max_restarts=0`` these tests fail: the run ends in
``ActorDiedError``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from manifests.io import read_json
from manifests.layout import RunLayout
from scaleout_support import check_same_dataset, free_port, photo_run, processes_named, tiny_captioner

pytestmark = [pytest.mark.slow, pytest.mark.faults]  # 2.5 min: bench/fault_matrix.py runs it
ROWS = 20
UNITS = 2


@pytest.fixture(scope="module")
def captioned(tmp_path_factory) -> tuple[str, ...]:
    """Overrides of the runs: small model batches, so a kill lands inside one, and a tiny random BLIP-2 captioner."""
    return ("resources.stages.nsfw.batch_size=4", *tiny_captioner(tmp_path_factory.mktemp("tiny-blip2")))


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> tuple[int, Path]:
    """Every run of the module reads one URL list of URLs on one port: the same input."""
    return free_port(), tmp_path_factory.mktemp("input") / "urls.parquet"


@pytest.fixture(scope="module")
def reference(ray_session, tmp_path_factory, captioned, origin) -> RunLayout:
    with photo_run(tmp_path_factory.mktemp("fault-free"), ROWS, captioned, *origin) as layout:
        pass  # its origin goes down with the block: the faulted runs serve on the same port
    return layout


class ActorKiller(threading.Thread):
    """kill -9 the first process of this test's Ray titled after ``stage`` while it runs a batch: Ray titles an
    actor's process ``ray::MapWorker(...stage...)`` and appends ``.submit`` while a batch runs in it."""

    def __init__(self, stage: str) -> None:
        super().__init__(daemon=True)
        self.stage, self.killed, self.done = stage, [], threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.done.is_set():
            for proc in processes_named(me.children(recursive=True), self.stage):
                try:
                    if ".submit" in " ".join(proc.cmdline()):
                        proc.kill()
                        self.killed.append(proc.pid)
                        return
                except psutil.Error:  # exited while we looked
                    continue
            time.sleep(0.02)


@pytest.mark.parametrize("stage", ["OpenNsfwScorer", "Blip2Captioner"], ids=["score", "caption"])
def test_a_model_actor_killed_mid_batch_is_restarted_and_the_run_ends_in_the_fault_free_dataset(
        reference: RunLayout, tmp_path: Path, captioned, origin, stage: str) -> None:
    killer = ActorKiller(stage)
    killer.start()
    try:
        with photo_run(tmp_path, ROWS, captioned, *origin) as layout:
            pass
    finally:
        killer.done.set()
        killer.join()
    assert killer.killed, f"no {stage} actor was caught running a batch"
    phases = read_json(layout.run_json)["phases"]
    assert phases["score"]["units_run"] == UNITS  # each unit scored once: nothing committed twice
    assert phases["caption"]["rows_captioned"] == read_json(reference.run_json)["phases"]["caption"]["rows_captioned"]
    check_same_dataset(layout, reference)
