"""kill -9 the driver in the middle of ingest, in the middle of score with the open_nsfw actors alive, and in
the middle of score after units were committed; the rerun finishes with exact counts and the scores a
fault-free scoring of the same images gives.

The run is ``thresher run``'s: the score stages the config builds (shared decode, open_nsfw, lingua, pHash),
all real and offline (see driver.py). OCR, the slowest, is left out to keep the four runs short on 2 CPUs;
test_multinode runs it, and tests/filters/test_ocr.py checks its text does not depend on the batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driver import NSFW_ACTOR, ROWS_PER_UNIT, corpus
from scaleout_support import (check_complete_run, crash, descendants, free_port, processes_named, start_driver,
                              wait_until)
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.shards import iter_tar
from pipelines.config import RunConfig, load_config

pytestmark = pytest.mark.slow

NO_OCR = ("--set", "filters.ocr.enabled=false")


@pytest.mark.faults  # 90-100 s: run by bench/fault_matrix.py, not make test
def test_driver_killed_mid_ingest_then_mid_score_then_resumed(tmp_path: Path) -> None:
    work, port = tmp_path / "work", free_port()
    layout = RunLayout.at(work / "run")
    input_rows = len(corpus()[1])
    units = -(-input_rows // ROWS_PER_UNIT)

    first = start_driver(work, port, "--fetch-delay", "0.5", *NO_OCR)
    wait_until(lambda: len(layout.staged_row_files()) >= 2, first, timeout_s=300)
    crash(first)
    staged_before = {p.name for p in layout.staged_row_files()}
    assert 2 <= len(staged_before) < units, "the kill should land in the middle of ingest"
    assert not layout.is_done("ingest")

    _kill_with_nsfw_actors_alive(start_driver(work, port, *NO_OCR), layout)

    # Units come out of the stages together only once every stage's actors are up: this run gets that far.
    third = start_driver(work, port, *NO_OCR)
    scored_earlier = len(layout.score_files())
    wait_until(lambda: len(layout.score_files()) > scored_earlier, third, timeout_s=300, poll_s=0.01)
    crash(third)
    scored_before = {p.name: p.stat().st_mtime_ns for p in layout.score_files()}
    assert not layout.is_done("score"), "the kill should land in the middle of score"
    assert len(scored_before) < units

    fourth = start_driver(work, port, *NO_OCR)
    assert fourth.wait(timeout=400) == 0, sorted(work.glob("driver-*.log"))
    manifest = check_complete_run(layout.root, input_rows)

    run = json.loads(layout.run_json.read_text())
    assert run["phases"]["score"]["units_run"] == len(layout.score_files()) - len(scored_before)
    for path in layout.score_files():  # units scored before the crash were kept, not redone
        if path.name in scored_before:
            assert path.stat().st_mtime_ns == scored_before[path.name]
    _check_scores(layout, manifest, load_config(layout.root))


def _kill_with_nsfw_actors_alive(driver, layout: RunLayout) -> None:
    """kill -9 once an open_nsfw actor has loaded its model (its process no longer runs ``__init__``)."""
    actors: list = []

    def nsfw_actor_ready() -> bool:
        if not layout.is_done("ingest"):
            return False
        found = processes_named(descendants(driver), NSFW_ACTOR)
        actors[:] = [p for p in found if "__init__" not in " ".join(_cmdline(p))]
        return bool(actors)

    wait_until(nsfw_actor_ready, driver, timeout_s=300)
    killed = crash(driver)
    assert {a.pid for a in actors} <= killed, "the open_nsfw actor should be alive when the run is killed"
    assert not layout.is_done("score"), "the kill should land in the middle of score"


def _cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return ["__init__"]  # gone: not an actor to count as alive


def _check_scores(layout: RunLayout, manifest: pl.DataFrame, config: RunConfig) -> None:
    """One score row per staged sample across all unit files, each equal to the stages' own scores of the
    staged image, computed here without Ray and without a fault."""
    scores = pl.concat([pl.read_parquet(p) for p in layout.score_files()]).sort(col.SAMPLE_ID)
    staged = manifest.filter(pl.col(col.STATUS) == "success")
    assert scores.height == staged.height
    assert scores[col.SAMPLE_ID].n_unique() == scores.height
    expected = _fault_free_scores(layout, config).sort(col.SAMPLE_ID)
    assert expected.columns == scores.columns
    assert expected[col.SAMPLE_ID].to_list() == scores[col.SAMPLE_ID].to_list()
    for name in (col.NSFW_PROB, col.CAPTION_LANG, col.PHASH):
        assert scores[name].null_count() == 0, name
    for name in scores.columns:
        assert scores[name].to_list() == expected[name].to_list(), name
    assert pq.read_schema(layout.score_files()[0]).metadata[b"thresher.stages"]


def _fault_free_scores(layout: RunLayout, config: RunConfig) -> pl.DataFrame:
    """The configured score stages (``score_stages``, as ``thresher run`` builds them) over each staged tar,
    called as plain callables: the tar's batch as the reader makes it, the shared decode, then each stage."""
    from manifests.decode import decode_batch
    from pipelines.run import score_units
    from pipelines.run.decode import plan
    from pipelines.run.phases import _stage_batch
    from pipelines.run.stages import score_stages

    specs = score_stages(config)
    decode_plan = plan(config, specs)
    stages = [spec.cls(spec.config) for spec in specs]
    written = [c for spec in specs for c in spec.writes]
    parts = []
    for tar in layout.staged_tars():
        samples = list(iter_tar(tar))
        if not samples:
            continue
        columns = {ext for _, members in samples for ext in members}
        raw = {"__key__": np.array([key for key, _ in samples], dtype=object),
               score_units.PATH: np.array([str(tar)] * len(samples), dtype=object),
               **{ext: np.array([members.get(ext) for _, members in samples], dtype=object) for ext in columns}}
        batch = decode_batch(_stage_batch(raw), decode_plan)
        for stage in stages:
            batch = stage(batch)
        parts.append(pl.from_arrow(pa.table({name: pa.array(batch[name]) for name in (col.SAMPLE_ID, *written)})))
    return pl.concat(parts)
