"""thresher reexport RUN (and the deprecated export RUN): new shards of exactly the newly kept rows, the source run byte-for-byte unchanged."""

from __future__ import annotations

import argparse
import json
import shutil

import polars as pl
import pytest
import webdataset as wds

from tooling_support import tree_hashes
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.reexport import read_manifest
from manifests.schema import Status
from manifests.shards import iter_tar
from pipelines.cli.main import build_parser, main
from pipelines.cli.tools import is_tool

pytestmark = pytest.mark.slow


def expected_kept(manifest: pl.DataFrame, min_side: int, max_nsfw: float = 0.5,
                  max_text_area: float = 0.3) -> set[str]:
    """The new decision, by hand: the demo's rules with ``min_image_side`` changed, its NSFW limit, its duplicates."""
    kept = set()
    for row in manifest.iter_rows(named=True):
        caption = (row[col.CAPTION] or "").strip()
        if row[col.STATUS] != Status.SUCCESS or len(caption.split()) < 2 or len(caption) < 5:
            continue
        if row.get(col.DUPLICATE_OF) is not None or (row.get(col.NSFW_PROB) or 0.0) >= max_nsfw:
            continue
        if not passes_demo_signals(row, max_text_area):
            continue
        w, h = row[col.ORIGINAL_WIDTH], row[col.ORIGINAL_HEIGHT]
        if min(w, h) >= min_side and max(w, h) <= 3.0 * min(w, h):
            kept.add(row[col.SAMPLE_ID])
    return kept


def passes_demo_signals(row: dict, max_text_area: float) -> bool:
    """The demo's curation-signal rules (pipelines.cli.demo.DEMO_SIGNALS, OCR defaults), by hand; null passes."""
    def within(column: str, minimum: float | None = None, maximum: float | None = None) -> bool:
        value = row.get(column)
        return value is None or ((minimum is None or value >= minimum) and (maximum is None or value < maximum))

    return (row.get(col.CAPTION_LANG) in (None, "en") and within(col.TEXT_AREA_FRAC, maximum=max_text_area)
            and within(col.CAPTION_TEXT_OVERLAP, maximum=0.6) and within(col.QR_CODES, maximum=1.0)
            and within(col.GREY_ENTROPY, minimum=1.0))


def staged(run, manifest: pl.DataFrame) -> dict[str, bytes]:
    images = {}
    for shard in manifest[col.SHARD].drop_nulls().unique():
        for key, files in iter_tar(run / shard):
            images.update({f"{key}.{ext}": data for ext, data in files.items()})
    return images


def test_reexport_writes_exactly_the_new_kept_rows(real_run, capsys):
    before = tree_hashes(real_run)
    source = read_manifest(real_run)
    # The thumbnails are PDQ duplicates of their originals (content regions match), so the looser size rule
    # alone keeps nothing new; with no OCR limit the scanned page, small and text-dominated, gets through.
    assert main(["reexport", str(real_run), "--set", "filters.rules.min_image_side=64",
                 "--set", "filters.ocr.max_text_area_frac=1.0", "--name", "loose"]) == 0
    target = real_run.parent / f"{real_run.name}-loose"
    assert str(target) in capsys.readouterr().out
    assert tree_hashes(real_run) == before

    want = expected_kept(source, 64, max_text_area=1.0)
    assert len(want) > int(source[col.KEEP].sum())  # the looser thresholds keep the scanned page too
    samples = list(wds.WebDataset(sorted(str(p) for p in (target / "shards").glob("*.tar")), shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == sorted(want)
    images = staged(real_run, source)
    by_id = {r[col.SAMPLE_ID]: r for r in source.iter_rows(named=True)}
    for sample in samples:
        row = by_id[sample["__key__"]]
        assert sample["jpg"] == images[row[col.MEMBER]]
        assert sample["txt"].decode() == row[col.CAPTION]
        assert json.loads(sample["json"])[col.SAMPLE_ID] == row[col.SAMPLE_ID]

    manifest = read_manifest(target)
    assert manifest.columns == source.columns and manifest.height == source.height
    assert set(manifest.filter(pl.col(col.KEEP))[col.SAMPLE_ID]) == want
    record = json.loads((target / "export.json").read_text())
    assert record["source_run"] == str(real_run.resolve()) and record["kept"] == len(want)
    assert "min_image_side: 64" in (target / "config.yaml").read_text()


def test_reexport_never_overwrites(real_run, capsys):
    before = tree_hashes(real_run)
    args = ["reexport", str(real_run), "--set", "filters.rules.min_caption_words=3", "--name", "twice"]
    assert main(args) == 0
    target = real_run.parent / f"{real_run.name}-twice"
    exported = tree_hashes(target)
    assert main(args) == 2
    assert "exists already" in capsys.readouterr().err
    assert tree_hashes(target) == exported and tree_hashes(real_run) == before
    assert main(["reexport", str(real_run), "--name", "../escape"]) == 2
    assert main(["reexport", str(real_run), "--out", str(real_run / "exports" / "inside")]) == 2
    assert "never writes into" in capsys.readouterr().err
    assert tree_hashes(real_run) == before


def test_tools_run_on_an_export(real_run, capsys):
    """An export's manifest names the source run's staged images; tune and query work on it like on a run."""
    assert main(["reexport", str(real_run), "--set", "filters.rules.min_image_side=128", "--name", "mid"]) == 0
    target = real_run.parent / f"{real_run.name}-mid"
    assert main(["tune", str(target), "--set", "filters.rules.min_image_side=128"]) == 0
    assert "newly rejected" in capsys.readouterr().out
    assert main(["query", str(target), "SELECT count(*) FILTER (WHERE keep) AS kept FROM manifest"]) == 0


def parsed(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_export_forms(real_run, tmp_path):
    """A run directory means re-export; a YAML config or --in-place keeps the export phase of the spine."""
    config = tmp_path / "config.yaml"
    config.write_text("output_dir: x\n")
    assert is_tool(parsed("export", str(real_run)))
    assert not is_tool(parsed("export", str(config)))
    assert not is_tool(parsed("export", str(real_run), "--in-place"))
    assert not is_tool(parsed("run", str(config)))
    assert is_tool(parsed("reexport", str(real_run)))


def test_export_of_a_run_directory_still_reexports_with_a_deprecation_note(real_run, capsys):
    assert main(["export", str(real_run), "--set", "filters.rules.min_image_side=96", "--name", "old-verb"]) == 0
    captured = capsys.readouterr()
    assert "deprecated" in captured.err and "thresher reexport" in captured.err
    assert (real_run.parent / f"{real_run.name}-old-verb" / "shards").is_dir()


def test_stricter_threshold_repicks_survivors_on_every_path(real_run, tmp_path):
    """tune, re-export, a plain rerun and run --redo dedup keep the same rows under a stricter NSFW limit,
    and every one of them holds the keep invariant."""
    from support.dedup_reference import check_keep_invariant
    from filters.decide import decide
    from pipelines.config import load_config
    from pipelines.run.driver import run
    from pipelines.tools.commands import run_export, run_tune

    strict = "filters.nsfw.max_prob=0.1"
    source = read_manifest(real_run)
    report, _ = run_tune(real_run, [strict])
    target, summary = run_export(real_run, [strict], "strict-nsfw", None)
    exported = set(read_manifest(target).filter(pl.col(col.KEEP))[col.SAMPLE_ID])
    copy = tmp_path / "run"
    shutil.copytree(real_run, copy)
    config = load_config(copy, [strict, f"output_dir={copy}"])
    kept = {}
    for redo in ((), ("dedup",)):
        run(config, redo=redo)
        kept[redo] = set(read_manifest(copy).filter(pl.col(col.KEEP))[col.SAMPLE_ID])
    old_way = decide(source.lazy(), config.filters).collect()[col.KEEP].sum()  # re-applied stored duplicates
    print(f"kept: source {source[col.KEEP].sum()}, old re-apply {old_way}, tune {report.kept_after}, "
          f"re-export {summary['kept']}, rerun {len(kept[()])}, redo dedup {len(kept[('dedup',)])}")
    assert exported == kept[()] == kept[("dedup",)] and report.kept_after == summary["kept"] == len(exported)
    pairs = pl.concat([pl.read_parquet(f) for f in RunLayout.at(copy).pairs_files()])
    for ids in (exported, set(source.filter(pl.col(col.KEEP))[col.SAMPLE_ID])):
        assert check_keep_invariant(pairs, config.dedup.thresholds(), pl.Series(sorted(ids), dtype=pl.String),
                                    source) == []
