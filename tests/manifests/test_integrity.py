"""The cheap checks that find a corrupt intermediate before a phase reads it (manifests/integrity.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings, strategies as st

from manifests.integrity import parquet_problem, repair, staged_problem, with_tar_size
from manifests.io import write_json, write_parquet
from manifests.layout import RunLayout
from manifests.shards import write_tar


def _parquet(path: Path, rows: int = 50) -> Path:
    write_parquet(pa.table({"sample_id": [f"s{i}" for i in range(rows)], "x": list(range(rows))}), path)
    return path


@settings(max_examples=40, deadline=None)
@given(cut=st.floats(0.0, 0.999))
def test_every_truncation_of_a_parquet_file_is_found(tmp_path_factory, cut: float) -> None:
    path = _parquet(tmp_path_factory.mktemp("p") / "part.parquet")
    assert parquet_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])
    assert parquet_problem(path) is not None
    with pytest.raises(Exception):  # what a reader would have met
        pq.read_table(path)


def _staged(layout: RunLayout, unit: int) -> Path:
    tar = layout.staged_tar(unit)
    write_tar(tar, [(f"k{i}", {"jpg": bytes(3000), "txt": b"a cat"}) for i in range(4)])
    rows = layout.staged_rows(unit)
    write_parquet(with_tar_size(pa.table({"sample_id": [f"k{i}" for i in range(4)]}), tar), rows)
    return rows


def test_a_staged_tar_shorter_than_ingest_wrote_is_found(tmp_path: Path) -> None:
    layout = RunLayout.at(tmp_path)
    rows = _staged(layout, 0)
    assert staged_problem(rows) is None
    tar = layout.staged_tar(0)
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    assert "ingest wrote" in staged_problem(rows)
    tar.unlink()
    assert "missing" in staged_problem(rows)


def test_repair_removes_the_corrupt_file_and_its_phase_marker_only(tmp_path: Path) -> None:
    layout = RunLayout.at(tmp_path)
    good, bad = _staged(layout, 0), _staged(layout, 1)
    score_good, score_bad = _parquet(layout.scores_dir / "00000.parquet"), _parquet(layout.scores_dir / "00001.parquet")
    decided = _parquet(layout.decided_part("00000"))
    for phase in ("ingest", "score", "decide", "export"):
        write_json({}, layout.done_marker(phase))
    layout.staged_tar(1).write_bytes(layout.staged_tar(1).read_bytes()[:1024])
    decided.write_bytes(b"")
    lines = repair(layout)
    assert len(lines) == 2 and "ingest/staged/00001.tar" in lines[0] and "staged again" in lines[0]
    assert "decide/parts/part-00000.parquet" in lines[1] and "decide phase" in lines[1]
    assert good.exists() and layout.staged_tar(0).exists() and score_good.exists()
    assert not bad.exists() and not layout.staged_tar(1).exists() and not score_bad.exists()
    assert [p for p in ("ingest", "score", "decide", "export") if layout.is_done(p)] == ["score", "export"]
    assert repair(layout) == []
