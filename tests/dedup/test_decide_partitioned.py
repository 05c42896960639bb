"""The decision per ingest unit equals the decision of the whole assembled run: with the dedup phase's
rules (its survivors read as written) and with changed rules (survivors re-picked by tasks, against the
one-process re-pick); shards planned from per-unit kept counts hold the kept rows in sample_id order."""

from __future__ import annotations

import polars as pl
import pytest

from dedup.partitioned import run_partitioned
from dedup.plan import local_tasks
from support.dedup_reference import run_dedup
from filters.decide import decide as apply_decision
from manifests import schema as col
from manifests.export import shard_sizes
from manifests.shardplan import plan_sizes
from pipelines.config import RunConfig
from pipelines.run.decide_tasks import assemble, decide_partitioned, kept_counts, record_rules
from pipelines.run.repick import current_duplicates, join_duplicates
from tests.dedup.test_partitioned import DETECTORS, generated_run


def run_config(units: int, **filters) -> RunConfig:
    return RunConfig.model_validate({"input": {"path": "x.parquet"}, "output_dir": "out", "filters": filters,
                                     "dedup": {**DETECTORS, "partitions": {"buckets": units}}})


def redecide(frame: pl.LazyFrame, layout, config: RunConfig) -> pl.LazyFrame:
    """The whole-run reference: survivors re-picked in one process from all stored pairs, then decided."""
    stored = current_duplicates(frame, layout, config)
    dups = layout.root / "reference-duplicates.parquet"
    stored.write_parquet(dups)
    return apply_decision(join_duplicates(frame, [dups]), config.filters)


def decided(layout) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(f) for f in layout.decided_files()]).sort(col.SAMPLE_ID)


@pytest.mark.parametrize("units", [1, 3, 7])
def test_decide_per_unit_equals_decide_of_the_whole_run(tmp_path, units):
    layout = generated_run(tmp_path, units)
    config = run_config(units)
    run_partitioned(config.dedup, layout)
    record_rules(config, layout)
    found = decide_partitioned(config, layout, local_tasks)
    assert found["survivors"].startswith("as the dedup phase")
    parts = decided(layout)
    whole = apply_decision(assemble(layout, layout.duplicates_files()), config.filters).sort(col.SAMPLE_ID).collect()
    assert whole[col.DUPLICATE_OF].is_not_null().sum() > 100  # duplicates took part in the decision
    assert parts.select(whole.columns).equals(whole)
    assert len(layout.decided_files()) == units

    # Shards planned from the per-unit counts hold the kept rows in sample_id order, in shard_sizes' sizes.
    kept = kept_counts(layout)
    sizes = shard_sizes(sum(kept.values()), 250, 8)
    shards = plan_sizes(kept, sizes)
    by_unit = {u: pl.read_parquet(layout.decided_part(u)).filter(pl.col(col.KEEP))[col.SAMPLE_ID] for u in kept}
    planned = [[i for r in ranges for i in by_unit[r.partition][r.start:r.stop].to_list()] for ranges in shards]
    assert [len(ids) for ids in planned] == sizes
    assert [i for ids in planned for i in ids] == whole.filter(pl.col(col.KEEP))[col.SAMPLE_ID].to_list()


@pytest.mark.parametrize("units", [1, 3])
def test_changed_rules_re_pick_survivors_by_tasks_as_one_process_does(tmp_path, units):
    layout = generated_run(tmp_path, units)
    ran = run_config(units)
    run_partitioned(ran.dedup, layout)
    record_rules(ran, layout)
    stricter = run_config(units, aesthetic={"enabled": True, "min_score": 5.0})
    found = decide_partitioned(stricter, layout, local_tasks)
    assert found["survivors"] == "re-picked by tasks"
    parts = decided(layout)
    whole = redecide(assemble(layout), layout, stricter).sort(col.SAMPLE_ID).collect()
    assert parts.select(whole.columns).equals(whole)
    # The re-pick changed survivors: some cluster kept a row the stored duplicates had dropped.
    stored = apply_decision(assemble(layout, layout.duplicates_files()), stricter.filters).collect()
    assert stored[col.KEEP].sum() < parts[col.KEEP].sum()


def test_the_one_process_pairs_are_re_picked_in_one_process(tmp_path):
    layout = generated_run(tmp_path, 2)
    ran = run_config(2)
    run_dedup(ran.dedup.model_copy(update={"partitions": ran.dedup.partitions.model_copy(update={"enabled": False})}),
              layout, None)
    stricter = run_config(2, aesthetic={"enabled": True, "min_score": 5.0})
    found = decide_partitioned(stricter, layout, local_tasks)
    assert found["survivors"] == "re-picked in one process"
    whole = redecide(assemble(layout), layout, stricter).sort(col.SAMPLE_ID).collect()
    assert decided(layout).select(whole.columns).equals(whole)


def test_eligibility_per_unit_equals_the_driver_decision(tmp_path):
    from support.dedup_reference import ELIGIBLE
    from pipelines.run.decide_tasks import eligible_unit

    layout = generated_run(tmp_path, 3)
    filters = run_config(3, aesthetic={"enabled": True, "min_score": 5.0}).filters
    local_tasks(eligible_unit, [(str(layout.root), p.stem, filters) for p in layout.staged_row_files()])
    parts = pl.read_parquet(sorted(layout.dedup_eligible_dir.glob("*.parquet"))).sort(col.SAMPLE_ID)
    whole = (apply_decision(assemble(layout), filters).select(col.SAMPLE_ID, pl.col(col.KEEP).alias(ELIGIBLE))
             .sort(col.SAMPLE_ID).collect())
    assert parts.equals(whole)
    assert 0 < whole[ELIGIBLE].sum() < whole.height

    # The survivors read the per-unit files as they read one eligible frame.
    from dedup.config import DedupConfig
    dedup = DedupConfig.model_validate({**DETECTORS, "partitions": {"buckets": 2}})
    run_partitioned(dedup, layout)
    got = pl.read_parquet(layout.duplicates_files()).sort(col.SAMPLE_ID)
    run_dedup(dedup, layout, whole)
    assert got.equals(pl.read_parquet(layout.duplicates).sort(col.SAMPLE_ID))
