"""Fault cell "a corrupt intermediate file" for every phase that writes one: a finished run is copied, one
file of the copy is truncated, emptied or given a wrong digest, and the same command run again ends in the
fault-free dataset (manifest rows, kept set, shard contents by key), redoing only the unit the fault hit."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq
import pytest

from manifests import integrity
from manifests.io import read_json
from manifests.layout import RunLayout
from pipelines.config import load_config
from pipelines.run import driver as runner
from pipelines.run.score_units import DIGEST_KEY
from scaleout_support import check_same_dataset, copy_run, photo_run, tiny_captioner

pytestmark = pytest.mark.slow
ROWS = 20


@pytest.fixture(scope="module")
def reference(photo_reference: RunLayout) -> RunLayout:
    """A fault-free run of 30 photos in two units; its origin stays up so a unit can be crawled again. The
    session's (test_rerun reruns a copy of it): each cell below works on a copy."""
    return photo_reference


@pytest.fixture(scope="module")
def captioned(ray_session, tmp_path_factory):
    """The same run with a tiny random BLIP-2 captioner (its captions exported), so the caption phase writes parts."""
    overrides = tiny_captioner(tmp_path_factory.mktemp("tiny-blip2"))
    with photo_run(tmp_path_factory.mktemp("corrupt-captioned"), ROWS, overrides) as layout:
        yield layout


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_digest(path: Path) -> None:
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, DIGEST_KEY: b"0" * 16}), path)


CELLS: dict[str, tuple[Callable[[RunLayout], Path], Callable[[Path], None], tuple[str, ...], str, int]] = {
    # name: (the file, the fault, --redo, the phase that redoes it, units it redoes)
    "staged tar truncated, --redo score": (lambda l: l.staged_tar(1), _truncate, ("score",), "ingest", 1),
    "staged parquet emptied": (lambda l: l.staged_rows(0), lambda p: p.write_bytes(b""), (), "ingest", 1),
    "score unit truncated": (lambda l: l.score_files()[0], _truncate, (), "score", 1),
    "score unit with a wrong digest": (lambda l: l.score_files()[1], _wrong_digest, (), "score", 1),
    "dedup pairs part truncated": (lambda l: l.pairs_files()[0], _truncate, (), "dedup", 0),
    "decided part truncated": (lambda l: l.decided_files()[0], _truncate, (), "decide", 0),
    "manifest part emptied": (lambda l: l.manifest_files()[1], lambda p: p.write_bytes(b""), (), "export", 0),
}


# Over 20 s each: run by bench/fault_matrix.py, not make test (whose corrupt staged unit is the single-phase
# cell below, and whose corrupt score unit is the wrong digest).
SLOW = {"staged tar truncated, --redo score", "staged parquet emptied", "score unit truncated"}


@pytest.mark.parametrize("cell", [pytest.param(c, marks=pytest.mark.faults) if c in SLOW else c for c in sorted(CELLS)])
def test_a_corrupt_file_is_redone_and_the_run_ends_in_the_fault_free_dataset(reference: RunLayout, tmp_path: Path,
                                                                            cell: str) -> None:
    target, fault, redo, phase, units = CELLS[cell]
    copy = copy_run(reference, tmp_path / "run")
    fault(target(copy))
    stats = runner.run_all(runner.prepare(load_config(copy.root)), redo=redo)
    phases = read_json(copy.run_json)["phases"]
    if phase in ("ingest", "score"):
        assert phases[phase]["units_run"] == units, phases[phase]
    if phase == "ingest":  # the re-staged unit only is scored again
        assert phases["score"]["units_run"] == (2 if "score" in redo else 1)
    assert stats == read_json(reference.run_json)["counts"]
    check_same_dataset(copy, reference)
    if phase in integrity.WRITTEN_BY:  # redone, not merely left unread (dedup's pairs are read only on a re-pick)
        assert not [p for p in integrity.WRITTEN_BY[phase](copy) if integrity.parquet_problem(p)]


def test_a_single_phase_command_stages_a_corrupt_unit_again_before_it_scores(reference: RunLayout,
                                                                            tmp_path: Path) -> None:
    """``thresher score RUN`` after a staged tar was truncated: the unit is crawled again first, then scored."""
    copy = copy_run(reference, tmp_path / "run")
    _truncate(copy.staged_tar(0))
    result = runner.run_phase(runner.prepare(load_config(copy.root)), "score")
    assert copy.is_done("ingest") and read_json(copy.done_marker("ingest"))["units_run"] == 1
    assert result["units_run"] == 1
    assert runner.run_all(runner.prepare(load_config(copy.root))) == read_json(reference.run_json)["counts"]
    check_same_dataset(copy, reference)


@pytest.mark.faults
def test_a_truncated_caption_part_is_redone_and_the_run_ends_in_the_fault_free_dataset(captioned: RunLayout,
                                                                                     tmp_path: Path) -> None:
    """A caption part cut in half: found by its footer, its unit's captions made again (the other unit's kept),
    and the shards carry the fault-free run's captions."""
    copy = copy_run(captioned, tmp_path / "run")
    parts = sorted(copy.captions_dir.rglob("*.parquet"))
    assert len({p.parent for p in parts}) == 2, parts  # a part per unit
    untouched = {p: p.stat().st_mtime_ns for p in parts[1:] if p.parent != parts[0].parent}
    _truncate(parts[0])
    assert runner.run_all(runner.prepare(load_config(copy.root))) == read_json(captioned.run_json)["counts"]
    check_same_dataset(copy, captioned)
    assert not [p for p in integrity.WRITTEN_BY["caption"](copy) if integrity.parquet_problem(p)]
    assert untouched and all(p.stat().st_mtime_ns == t for p, t in untouched.items())  # the other unit: not redone
