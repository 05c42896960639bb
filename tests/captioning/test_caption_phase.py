"""The caption phase on local Ray: actor pools over kept rows only, then export with a recaption in {key}.txt."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from manifests import schema as col
from manifests.io import read_json, write_json, write_parquet
from manifests.layout import RunLayout
from manifests.reexport import read_manifest
from manifests.shards import iter_tar, write_tar
from pipelines.config import build_config
from pipelines.run.driver import prepare, run_phase

KEEP = [True, False, True, True, False]


def _staged_run(root: Path, photos: list[bytes]) -> RunLayout:
    """Two staged tars and a decided manifest: rows 0-3 in the first tar, row 4 (rejected) in the second."""
    layout = RunLayout.at(root)
    ids = [f"{i:09d}" for i in range(5)]
    images = photos + photos[:1]
    shards = [layout.relative(layout.staged_tar(0))] * 4 + [layout.relative(layout.staged_tar(1))]
    for unit, rows in ((0, range(4)), (1, range(4, 5))):
        write_tar(layout.staged_tar(unit),
                  [(ids[i], {"jpg": images[i], "txt": f"alt text {i}".encode()}) for i in rows])
    decided = pl.DataFrame({
        col.SAMPLE_ID: ids, col.CAPTION: [f"alt text {i}" for i in range(5)], col.STATUS: ["success"] * 5,
        col.SHARD: shards, col.MEMBER: [f"{i}.jpg" for i in ids], col.KEEP: KEEP,
        col.REJECT_REASONS: [[] if k else ["clip_score_low"] for k in KEEP],
    })
    for (unit,), rows in decided.with_columns(pl.col(col.SHARD).str.extract(r"(\d+)\.tar$").alias("unit"))\
            .partition_by("unit", as_dict=True).items():
        write_parquet(rows.drop("unit").to_arrow(), layout.decided_part(unit))
    write_json({u: [n, k] for u, n, k in (("00000", 4, sum(KEEP[:4])), ("00001", 1, sum(KEEP[4:])))}, layout.decided_counts)
    return layout


@pytest.mark.slow
def test_caption_phase_recaptions_kept_rows_only_on_actor_pools(ray_session, tmp_path: Path, photos: list,
                                                                tiny_blip2: Path, tiny_llava: Path) -> None:
    layout = _staged_run(tmp_path / "run", photos)
    overrides = [f"caption.blip2.model={tiny_blip2}", f"caption.llava.model={tiny_llava}",
                 "caption.blip2.enabled=true", "caption.llava.enabled=true",
                 "caption.llava.generation.max_new_tokens=6", "caption.blip2.generation.max_new_tokens=6",
                 "resources.stages.blip2={batch_size: 2, num_cpus: 0.5}",
                 "resources.stages.llava={batch_size: 2, num_cpus: 0.5}", "export.caption_source=caption_blip2"]
    urls = tmp_path / "urls.txt"  # the run is staged by hand; prepare() still checks that the input reads
    urls.write_text("http://127.0.0.1/unused.jpg\n")
    config = build_config({"output_dir": str(layout.root), "input": {"path": str(urls)}}, overrides)
    run = prepare(config)

    run_phase(run, "caption")
    captions = pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in sorted(layout.captions_dir.rglob("*.parquet"))],
                         how="diagonal_relaxed")  # a block whose captions were all null wrote type null
    kept = [f"{i:09d}" for i, k in enumerate(KEEP) if k]
    assert sorted(captions[col.SAMPLE_ID].to_list()) == kept
    assert {col.CAPTION_BLIP2, col.CAPTION_LLAVA, col.CAPTION_STATUS} <= set(captions.columns)
    for status in captions[col.CAPTION_STATUS].to_list():  # six tokens of the tiny models: text, maybe cut there
        assert status == "ok" or all(p.endswith(":truncated") for p in status.split(";")), status
    for column in (col.CAPTION_BLIP2, col.CAPTION_LLAVA):
        assert all(isinstance(c, str) and c.strip() for c in captions[column].to_list()), column
    stages = read_json(layout.run_json)["phases"]["caption"]["stages"]
    assert [stages[s]["config"]["revision"] for s in ("blip2", "llava")] == [
        config.caption.blip2.revision, config.caption.llava.revision]
    assert stages["llava"]["config"]["model"] == str(tiny_llava)

    run_phase(run, "export")
    manifest = read_manifest(layout.root).sort(col.SAMPLE_ID)
    assert manifest[col.CAPTION].to_list() == [f"alt text {i}" for i in range(5)]
    assert manifest.filter(~pl.col(col.KEEP))[col.CAPTION_STATUS].null_count() == 2
    by_id = {r[col.SAMPLE_ID]: r for r in manifest.to_dicts()}
    for tar in sorted(layout.shards_dir.glob("*.tar")):
        for key, files in iter_tar(tar):
            row = json.loads(files["json"])
            assert row[col.CAPTION] == by_id[key][col.CAPTION]
            assert row[col.CAPTION_LLAVA] == by_id[key][col.CAPTION_LLAVA]
            assert by_id[key][col.CAPTION_BLIP2]  # kept: the recaption, not the alt text as a fallback
            assert files["txt"].decode() == by_id[key][col.CAPTION_BLIP2]


def test_a_rerun_captions_only_newly_kept_rows_and_drops_the_unkept(tmp_path: Path, photos: list) -> None:
    """New thresholds changed the kept set: captions of rows still kept stay, only new ones are made."""
    from pipelines.run.phases import caption_todo

    layout = _staged_run(tmp_path / "run", photos)
    ids = [f"{i:09d}" for i in range(5)]
    old = layout.captions_dir / "unit=00000" / "old.parquet"  # captioned under the last decision: rows 0 and 1
    old.parent.mkdir(parents=True)
    write_parquet(pl.DataFrame({col.SAMPLE_ID: ids[:2], col.CAPTION_BLIP2: ["zero", "one"]}).to_arrow(), old)
    gone = layout.captions_dir / "unit=00009" / "x.parquet"  # a unit that no longer exists
    gone.parent.mkdir(parents=True)
    write_parquet(pl.DataFrame({col.SAMPLE_ID: ["x"], col.CAPTION_BLIP2: ["x"]}).to_arrow(), gone)

    todo = tmp_path / "todo"
    assert caption_todo(layout, todo) == ["00000"]  # KEEP: rows 0, 2, 3; row 1 no longer kept
    assert pl.read_parquet(todo / "00000.parquet")[col.SAMPLE_ID].to_list() == ids[2:4]
    assert pl.read_parquet(old).rows() == [(ids[0], "zero")]
    assert not gone.parent.exists()
