"""thresher tune: the new decision's counts against an independent plain-Python decision."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter

import polars as pl

from tooling_support import REPO, ClipSection, NsfwSection, ScoreFilters
from filters.config import RulesConfig
from filters.decide import decide, reason_exprs
from manifests import schema as col
from manifests.reexport import read_manifest
from manifests.schema import Reason, Status
from manifests.tune import retune
from support.manifest_synthetic import chunk


def python_reasons(row: dict, rules: RulesConfig, clip_min: float | None = None,
                   nsfw_max: float | None = None) -> list[str]:
    """The decision written out row by row, sharing no code with filters.decide."""
    ok = row[col.STATUS] == Status.SUCCESS
    reasons = [] if ok else [Reason.for_status(row[col.STATUS])]
    caption = (row[col.CAPTION] or "").strip()
    if len(caption.split()) < rules.min_caption_words or len(caption) < rules.min_caption_chars:
        reasons.append(Reason.CAPTION_TOO_SHORT)
    if ok:
        w, h = row[col.ORIGINAL_WIDTH], row[col.ORIGINAL_HEIGHT]
        if min(w, h) < rules.min_image_side:
            reasons.append(Reason.IMAGE_TOO_SMALL)
        if max(w, h) > rules.max_aspect_ratio * min(w, h):
            reasons.append(Reason.ASPECT_RATIO)
        if clip_min is not None and row.get(col.CLIP_SCORE) is not None and row[col.CLIP_SCORE] < clip_min:
            reasons.append(Reason.CLIP_LOW)
        if nsfw_max is not None and row.get(col.NSFW_PROB) is not None and row[col.NSFW_PROB] >= nsfw_max:
            reasons.append(Reason.NSFW)
    if row.get(col.DUPLICATE_OF) is not None:
        reasons.append("duplicate_" + row[col.DUP_KIND])
    return reasons


def expected_report(rows: list[dict], reasons_after: list[list[str]]) -> dict:
    before = [not r[col.REJECT_REASONS] for r in rows]
    after = [not rs for rs in reasons_after]
    return {
        "rows": len(rows),
        "kept_before": sum(before), "kept_after": sum(after),
        "kept_both": sum(b and a for b, a in zip(before, after)),
        "newly_kept": sum(a and not b for b, a in zip(before, after)),
        "newly_rejected": sum(b and not a for b, a in zip(before, after)),
        "reasons_before": dict(Counter(x for r in rows for x in r[col.REJECT_REASONS])),
        "reasons_after": dict(Counter(x for rs in reasons_after for x in rs)),
    }


def test_rules_overrides_match_python(synthetic_run):
    from pipelines.tools.commands import run_tune
    overrides = ["filters.rules.min_image_side=100", "filters.rules.min_caption_words=4",
                 "filters.rules.max_aspect_ratio=2.0"]
    report, text = run_tune(synthetic_run, overrides)
    rows = read_manifest(synthetic_run).to_dicts()
    rules = RulesConfig(min_image_side=100, min_caption_words=4, max_aspect_ratio=2.0)
    assert report.as_dict() == expected_report(rows, [python_reasons(r, rules) for r in rows])
    assert report.newly_kept > 0 and report.newly_rejected > 0  # the overrides loosen one rule, tighten two
    assert f"{report.newly_rejected:,}" in text and "image_too_small" in text


def test_no_override_changes_nothing(synthetic_run):
    from pipelines.tools.commands import run_tune
    report, _ = run_tune(synthetic_run, [])
    assert report.newly_kept == report.newly_rejected == 0
    assert report.reasons_before == report.reasons_after


def test_score_thresholds_match_python(synthetic_run):
    """filters.clip / filters.nsfw do not exist on main yet: a test-local FiltersConfig stands in for them."""
    config = ScoreFilters(clip=ClipSection(min_score=0.3), nsfw=NsfwSection(max_prob=0.2))
    manifest = read_manifest(synthetic_run).lazy()
    report = retune(manifest, reason_exprs(config, set(manifest.collect_schema().names())))
    rows = read_manifest(synthetic_run).to_dicts()
    after = [python_reasons(r, RulesConfig(), clip_min=0.3, nsfw_max=0.2) for r in rows]
    assert report.as_dict() == expected_report(rows, after)
    decided = decide(manifest, config).collect()  # tune counts decide's own reason expressions, without the lists
    assert report.kept_after == decided[col.KEEP].sum()
    assert report.reasons_after[Reason.CLIP_LOW] > 0 and report.reasons_after[Reason.NSFW] > 0


def test_manifest_without_score_columns():
    frame = decide(chunk(0, 3000, seed=5, scores=False).lazy(), ScoreFilters()).collect()
    config = ScoreFilters(clip=ClipSection(min_score=0.3), nsfw=NsfwSection(max_prob=0.2))
    report = retune(frame.lazy(), reason_exprs(config, set(frame.columns)))
    assert report.newly_kept == report.newly_rejected == 0  # no score column: the thresholds have nothing to act on
    assert Reason.CLIP_LOW not in report.reasons_after


CHILD = """
import json, sys
from pipelines.cli.main import main
rc = main(["tune", sys.argv[1], "--set", "filters.rules.min_image_side=300"])
heavy = sorted(m for m in ("torch", "ray", "open_clip", "onnxruntime", "transformers", "PIL.Image") if m in sys.modules)
print(json.dumps({"rc": rc, "heavy": heavy}))
"""


def test_tune_needs_only_the_manifest(synthetic_run, tmp_path):
    """The manifest and config alone, in a bare directory: no staged image, no model, nothing imported for one."""
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copytree(synthetic_run / "manifest", bare / "manifest")
    shutil.copy(synthetic_run / "config.yaml", bare / "config.yaml")
    before = sorted(p.name for p in bare.iterdir())
    done = subprocess.run([sys.executable, "-c", CHILD, str(bare)], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}
    assert "newly rejected" in done.stdout
    assert sorted(p.name for p in bare.iterdir()) == before  # and it wrote nothing


def _bare_run(tmp_path, **sections):
    """A run directory with a decided manifest without score columns, its config and an empty pairs file."""
    from dedup.cluster import PAIRS_SCHEMA
    from manifests.layout import RunLayout
    from pipelines.config import build_config, dump_config
    from tooling_support import run_config

    run = tmp_path / "run"
    config = build_config(run_config(run, **sections))
    decide(chunk(0, 500, seed=2, scores=False).lazy(), config.filters).collect().write_parquet(
        (run.mkdir() or run) / "manifest.parquet")
    (run / "config.yaml").write_text(dump_config(config))
    pairs = RunLayout.at(run).pairs
    pairs.parent.mkdir()
    pl.DataFrame(schema=PAIRS_SCHEMA).write_parquet(pairs)
    return run


def test_tune_says_when_an_override_cannot_act(tmp_path):
    """A stage that never ran, a detector that never ran, a threshold below the stored pairs: each is named,
    with the command that would make it act, instead of a silent +0."""
    from pipelines.tools.commands import run_tune

    run = _bare_run(tmp_path, dedup={"phash": {"enabled": True}})
    _, text = run_tune(run, ["filters.nsfw.enabled=true", "filters.nsfw.max_prob=0.1", "filters.clip.min_score=0.3",
                             "dedup.phash.threshold=0.7", "dedup.sscd.threshold=0.9"])
    assert "no nsfw_prob column, so the nsfw stage never ran" in text
    assert (f"thresher run {run} --set filters.nsfw.enabled=true --set filters.nsfw.max_prob=0.1 --redo score, "
            f"then tune again") in text
    # clip is off and never ran: "add --set filters.clip.enabled=true" would only say it never ran
    assert "filters.clip is not enabled" not in text
    assert f"--set filters.clip.enabled=true --set filters.clip.min_score=0.3 --redo score" in text
    assert "pairs between 0.7 and 0.84375 are not found" in text
    assert "--set dedup.phash.store_threshold=0.7 --set dedup.phash.threshold=0.7 --redo dedup" in text
    assert "the sscd detector never ran" in text
    _, plain = run_tune(run, ["filters.rules.min_image_side=300", "dedup.phash.enabled=false"])
    assert "note:" not in plain


def test_tune_notes_every_switch_that_cannot_act_on_this_run(tmp_path):
    from pipelines.tools.commands import run_tune

    run = _bare_run(tmp_path, dedup={"exact": {"enabled": False}})  # on by default: this run never ran it
    notes = lambda *sets: [line for line in run_tune(run, list(sets))[1].splitlines() if line.startswith("note:")]
    # exact never ran: its pixel hashes come from a score stage, so the score phase runs again
    exact, = notes("dedup.exact.enabled=true")
    assert "the exact detector never ran" in exact
    assert exact.endswith(f"thresher run {run} --set dedup.exact.enabled=true --redo score, then tune again")
    # sha256 alone comes from ingest: the dedup phase is enough
    sha, = notes("dedup.exact.enabled=true", "dedup.exact.pixels=false")[:1]
    assert sha.endswith("--set dedup.exact.enabled=true --redo dedup, then tune again")
    minhash, = notes("dedup.minhash.enabled=true")
    assert "--redo score" in minhash
    blip, export = notes("caption.blip2.enabled=true", "export.shard_size=10")
    assert "caption is no part of the decision" in blip and "--set caption.blip2.enabled=true --redo caption" in blip
    assert "export is no part of the decision, so tune ignores it" in export
    assert notes("filters.nsfw.enabled=false", "dedup.minhash.enabled=false") == []


def test_a_detector_the_config_names_but_no_dedup_phase_ran_is_noted(tmp_path):
    """``thresher score RUN --set dedup.exact.enabled=true`` writes exact into config.yaml before any dedup
    phase ran it: run.json's record of the dedup phase says which detectors stored pairs."""
    from manifests.io import write_json
    from pipelines.tools.commands import run_tune

    run = _bare_run(tmp_path, dedup={"exact": {"enabled": True}})
    write_json({"phases": {"dedup": {"detectors": []}}}, run / "run.json")
    text = run_tune(run, ["dedup.exact.enabled=true"])[1]
    assert "note: --set dedup.exact.enabled=true: the exact detector never ran" in text
    write_json({"phases": {"dedup": {"detectors": ["sha256", "pixel_hash"]}}}, run / "run.json")
    assert "note:" not in run_tune(run, ["dedup.exact.enabled=true"])[1]
