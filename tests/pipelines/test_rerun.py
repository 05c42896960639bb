"""Reruns do only what changed, on the session's local Ray: a finished run rerun as it is does nothing and
leaves its shards alone; new thresholds re-score nothing and redo decide and export only; a default
config removes byte-identical copies."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
import yaml

from manifests import schema as col
from manifests.io import read_json
from manifests.layout import RunLayout
from manifests.reexport import read_manifest
from pipelines.cli.corpus import jpeg, load_photos
from pipelines.config import build_config, load_config
from pipelines.run import driver as runner
from pipelines.tools.commands import run_tune
from scaleout_support import copy_run

pytestmark = pytest.mark.slow
NEW_THRESHOLDS = ["filters.nsfw.max_prob=0.3", "dedup.pdq.threshold=0.9", "filters.rules.max_aspect_ratio=1.2"]


def _files(root: Path) -> dict[str, tuple[int, str]]:
    """mtime and sha256 of every file under ``root``: what a watcher of the directory would see."""
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def _markers(layout: RunLayout) -> dict[str, dict]:
    return {name: read_json(layout.done_marker(name)) for name in runner.PHASE_NAMES}


@pytest.fixture(scope="module")
def finished(photo_reference: RunLayout, tmp_path_factory) -> RunLayout:
    """A copy of the session's finished run of the first 30 photos (test_corrupt's reference, which must stay
    as it is): the tests below rerun it in order, as one user would."""
    return copy_run(photo_reference, tmp_path_factory.mktemp("rerun") / "run")


def test_a_finished_run_rerun_unchanged_does_nothing(finished: RunLayout, capsys) -> None:
    shards, manifest, markers = _files(finished.shards_dir), _files(finished.manifest_dir), _markers(finished)
    capsys.readouterr()
    run = runner.prepare(load_config(finished.root))
    assert runner.nothing_to_do(run)  # the CLI then starts no Ray at all
    runner.run_all(run)
    printed = capsys.readouterr().out
    assert [name for name in runner.PHASE_NAMES if f"{name}: done already" not in printed] == []
    assert _files(finished.shards_dir) == shards and _files(finished.manifest_dir) == manifest
    assert _markers(finished) == markers


def test_new_thresholds_rescore_nothing_and_redo_decide_and_export_only(finished: RunLayout, capsys) -> None:
    config = load_config(finished.root, NEW_THRESHOLDS)
    result = runner.run_phase(runner.prepare(config), "score")  # thresher score RUN --set ...
    assert result["units_run"] == 0
    assert read_json(finished.run_json)["phases"]["score"]["units_run"] == 0
    tuned, _ = run_tune(finished.root, NEW_THRESHOLDS)  # the manifest is still the old decision's
    staged, markers = _files(finished.staged_dir), _markers(finished)
    capsys.readouterr()

    stats = runner.run_all(runner.prepare(config))
    printed = capsys.readouterr().out
    done = [name for name in runner.PHASE_NAMES if f"{name}: done already" in printed]
    assert done == ["ingest", "score", "dedup"]
    after = _markers(finished)
    assert [n for n in runner.PHASE_NAMES if after[n] != markers[n]] == ["decide", "caption", "export"]
    assert _files(finished.staged_dir) == staged
    manifest = read_manifest(finished.root)
    assert stats["kept"] == manifest[col.KEEP].sum() == tuned.kept_after
    reasons = Counter(r for rs in manifest[col.REJECT_REASONS].to_list() for r in rs)
    assert dict(reasons) == tuned.reasons_after != tuned.reasons_before


def test_a_default_config_drops_byte_identical_copies(ray_session, tmp_path: Path) -> None:
    """``thresher config > c.yaml; thresher run c.yaml`` on a folder holding copies of one photo."""
    from pipelines.cli.configdoc import render

    photos = sorted(load_photos().items())[:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, (img, caption) in photos:
        (folder / f"{name}.jpg").write_bytes(jpeg(img))
        (folder / f"{name}.txt").write_text(caption)
    for copy in range(4):  # the first photo's file, byte for byte, under other names
        (folder / f"copy{copy}.jpg").write_bytes((folder / f"{photos[0][0]}.jpg").read_bytes())
    data = yaml.safe_load(render())
    data.update(output_dir=str(tmp_path / "run"), input={**data["input"], "kind": "folder", "path": str(folder)})
    stats = runner.run(build_config(data))
    manifest = read_manifest(tmp_path / "run")
    assert stats["rows"] == 7 and stats["kept"] == 3
    assert manifest.filter(manifest[col.KEEP])[col.SHA256].n_unique() == 3
