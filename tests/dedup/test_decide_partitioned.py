"""The decision per ingest unit (reading only that unit's duplicates) equals the decision of the
whole assembled run, and shards planned from per-unit kept counts hold the samples plan_shards gives."""

from __future__ import annotations

import polars as pl

from dedup.config import DedupConfig
from dedup.partitioned import local_tasks, run_partitioned
from dedup.run import run_dedup
from filters.config import FiltersConfig
from filters.decide import decide as apply_decision
from manifests import schema as col
from manifests.export import plan_shards
from pipelines.decide_tasks import decide_partitioned, decided_part, plan_export
from pipelines.phases import assemble
from tests.dedup.test_partitioned import DETECTORS, generated_run


def test_decide_per_unit_equals_decide_of_the_whole_run(tmp_path):
    layout = generated_run(tmp_path, 4)
    run_partitioned(DedupConfig.model_validate({**DETECTORS, "partitions": {"buckets": 3}}), layout)
    filters = FiltersConfig()
    kept = decide_partitioned(filters, layout, tasks=local_tasks)
    parts = pl.concat([pl.read_parquet(decided_part(layout, u)) for u in sorted(kept)]).sort(col.SAMPLE_ID)
    whole = apply_decision(assemble(layout), filters).sort(col.SAMPLE_ID).collect()
    assert whole[col.DUPLICATE_OF].is_not_null().sum() > 100  # duplicates took part in the decision
    assert parts.select(whole.columns).equals(whole)

    shards = plan_export(kept, 250)
    reference = plan_shards(whole.filter(pl.col(col.KEEP)), 250)
    assert len(shards) == len(reference)
    by_unit = {u: pl.read_parquet(decided_part(layout, u)).filter(pl.col(col.KEEP))[col.SAMPLE_ID] for u in kept}
    for ranges, shard in zip(shards, reference):
        ids = [i for r in ranges for i in by_unit[r.partition][r.start:r.stop].to_list()]
        assert ids == [row[col.SAMPLE_ID] for row in shard.rows]


def test_eligibility_per_unit_equals_the_driver_decision(tmp_path):
    from dedup.partitioned import eligible_dir, local_tasks
    from dedup.run import ELIGIBLE
    from pipelines.decide_tasks import eligible_unit

    layout = generated_run(tmp_path, 3)
    filters = FiltersConfig.model_validate({"aesthetic": {"enabled": True, "min_score": 5.0}})
    local_tasks(eligible_unit, [(str(layout.root), p.stem, filters) for p in layout.staged_row_files()])
    parts = pl.read_parquet(sorted(eligible_dir(layout).glob("*.parquet"))).sort(col.SAMPLE_ID)
    whole = (apply_decision(assemble(layout), filters).select(col.SAMPLE_ID, pl.col(col.KEEP).alias(ELIGIBLE))
             .sort(col.SAMPLE_ID).collect())
    assert parts.equals(whole)
    assert 0 < whole[ELIGIBLE].sum() < whole.height

    # The survivors read the per-unit files as they read one eligible frame.
    dedup = DedupConfig.model_validate({**DETECTORS, "partitions": {"buckets": 2}})
    run_partitioned(dedup, layout)
    got = pl.read_parquet(layout.duplicates_files()).sort(col.SAMPLE_ID)
    run_dedup(dedup, layout, whole)
    assert got.equals(pl.read_parquet(layout.duplicates).sort(col.SAMPLE_ID))
