"""The decision per ingest unit, as Ray tasks, and export planned from the per-unit kept counts.

Once dedup has written each unit's duplicates rows (``dedup/duplicates/UNIT/``), the decision is
row-local: a task joins one unit's ingest rows, scores and duplicates, applies the rules and writes
that unit's manifest part. The driver only adds up counts and plans shards from them
(``manifests.shardplan``). Not yet wired into ``phases.decide``/``export``: the partitioned manifest
and the tools that read it are a separate change.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from filters.config import FiltersConfig
from filters.decide import decide as apply_decision
from manifests import schema as col
from manifests.io import read_parquet_files, write_parquet
from manifests.layout import RunLayout
from manifests.schema import INGEST_SCHEMA
from manifests.shardplan import ShardRange, plan_ranges
from dedup.partitioned import Tasks, eligible_dir
from dedup.survivors import ELIGIBLE


def decided_part(layout: RunLayout, unit: str) -> Path:
    return layout.root / "decide" / "parts" / f"{unit}.parquet"


def unit_frame(layout: RunLayout, unit: str, duplicates: bool = True) -> pl.LazyFrame:
    """One unit's ingest rows left-joined with its scores and duplicates (``phases.assemble`` for one unit)."""
    frame = pl.from_arrow(read_parquet_files([layout.staged_dir / f"{unit}.parquet"], INGEST_SCHEMA)).lazy()
    own = layout.scores_dir / f"{unit}.parquet"  # the score phase names a unit's file after its tar
    scores = [own] if own.exists() else layout.score_files()  # else: any layout, read with a join
    if scores:
        scan = pl.scan_parquet([str(p) for p in scores])
        frame = frame.join(scan.select([c for c in scan.collect_schema().names() if c not in col.ARTEFACT_COLUMNS]),
                           on=col.SAMPLE_ID, how="left")
    dups = layout.unit_duplicates(unit) if duplicates else []
    if dups:
        frame = frame.join(pl.scan_parquet([str(p) for p in dups]).select(
            col.SAMPLE_ID, col.CLUSTER_ID, col.DUPLICATE_OF, col.DUP_KIND,
            pl.col(col.SIMILARITY).alias(col.DUP_SIMILARITY)), on=col.SAMPLE_ID, how="left")
    return frame


def decide_unit(root: str, unit: str, filters: FiltersConfig) -> tuple[str, int, int]:
    """Task: one unit's manifest part; returns (unit, rows, kept)."""
    layout = RunLayout.at(root)
    manifest = apply_decision(unit_frame(layout, unit), filters).sort(col.SAMPLE_ID).collect()
    write_parquet(manifest.to_arrow(), decided_part(layout, unit))
    return unit, manifest.height, int(manifest[col.KEEP].sum())


def eligible_unit(root: str, unit: str, filters: FiltersConfig) -> int:
    """Task: which of one unit's rows pass every rule but dedup -> dedup/eligible/UNIT.parquet."""
    layout = RunLayout.at(root)
    frame = (apply_decision(unit_frame(layout, unit, duplicates=False), filters)
             .select(col.SAMPLE_ID, pl.col(col.KEEP).alias(ELIGIBLE)).collect())
    write_parquet(frame.to_arrow(), eligible_dir(layout) / f"{unit}.parquet")
    return frame.height


def decide_partitioned(filters: FiltersConfig, layout: RunLayout, tasks: Tasks) -> dict[str, int]:
    """Every unit's manifest part; returns the kept count per unit (what export plans from)."""
    units = [p.stem for p in layout.staged_row_files()]
    found = tasks(decide_unit, [(str(layout.root), u, filters) for u in units])
    return {unit: kept for unit, _, kept in found}


def plan_export(kept: dict[str, int], shard_size: int) -> list[list[ShardRange]]:
    return plan_ranges(kept, shard_size)
