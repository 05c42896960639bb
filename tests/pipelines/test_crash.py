"""kill -9 the driver in the middle of ingest, then in the middle of score; the rerun finishes with exact counts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from scaleout_support import check_complete_run, crash, free_port, start_driver, wait_until
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.shards import iter_tar
from pipelines.corpus import build_corpus
from pixel_stage import pixel_hash

pytestmark = pytest.mark.slow


def test_driver_killed_mid_ingest_then_mid_score_then_resumed(tmp_path: Path) -> None:
    work, port = tmp_path / "work", free_port()
    layout = RunLayout.at(work / "run")
    input_rows = len(build_corpus(0)[1])
    units = -(-input_rows // 10)

    first = start_driver(work, port, "--fetch-delay", "0.25")
    wait_until(lambda: len(layout.staged_row_files()) >= 2, first)
    crash(first)
    staged_before = {p.name for p in layout.staged_row_files()}
    assert 2 <= len(staged_before) < units, "the kill should land in the middle of ingest"
    assert not layout.is_done("ingest")

    # The same score stage settings in both runs: a changed stage config would rightly rescore everything.
    score_args = ("--score-delay", "0.25", "--set", "resources.stages.pixel_hash.batch_size=4")
    second = start_driver(work, port, *score_args)
    wait_until(lambda: layout.is_done("ingest") and len(layout.score_files()) >= 2, second)
    crash(second)
    scored_before = {p.name: p.stat().st_mtime_ns for p in layout.score_files()}
    assert not layout.is_done("score"), "the kill should land in the middle of score"
    assert len(scored_before) < units

    third = start_driver(work, port, *score_args)
    assert third.wait(timeout=300) == 0, sorted(work.glob("driver-*.log"))
    manifest = check_complete_run(layout.root, input_rows)

    run = json.loads(layout.run_json.read_text())
    assert run["phases"]["score"]["units_run"] == len(layout.score_files()) - len(scored_before)
    for path in layout.score_files():  # units scored before the crash were kept, not redone
        if path.name in scored_before:
            assert path.stat().st_mtime_ns == scored_before[path.name]
    _check_scores(layout, manifest)


def _check_scores(layout: RunLayout, manifest: pl.DataFrame) -> None:
    """One score row per staged sample across all unit files, each hash matching the staged image."""
    scores = pl.concat([pl.read_parquet(p) for p in layout.score_files()])
    staged = manifest.filter(pl.col(col.STATUS) == "success")
    assert scores.height == staged.height
    assert scores[col.SAMPLE_ID].n_unique() == scores.height
    hashes = dict(zip(scores[col.SAMPLE_ID].to_list(), scores[col.PIXEL_HASH].to_list()))
    for tar in layout.staged_tars()[:3]:
        for key, members in iter_tar(tar):
            assert hashes[key] == pixel_hash(members["jpg"])
    assert pq.read_schema(layout.score_files()[0]).metadata[b"thresher.stages"]
