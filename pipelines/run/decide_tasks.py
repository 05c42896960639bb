"""The decision per ingest unit, as tasks: survivors for this config's rules, then one manifest part per unit.

Once each unit's duplicates rows are known, the decision is row-local: a task joins one unit's
ingest rows, scores and duplicates, applies the rules and writes ``decide/parts/part-UNIT.parquet``.
Which duplicates: the dedup phase ranked survivors by the rules of its config (``dedup/rules.json``
holds their digest). When decide runs with the same rules it reads ``dedup/duplicates/``; when a rule
changed, a row that passed may now fail, so the survivors are picked again from the stored pairs
(``pipelines.run.repick.survivors``, the one survivor path tune and re-export share).
The driver holds only counts; export plans shards from them (``manifests.shardplan``).
Nothing here imports Ray: ``tasks`` is a Ray map in the phases and a plain loop in tests and tools.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import polars as pl

from dedup.plan import Tasks
from filters.config import FiltersConfig
from filters.decide import decide as apply_decision
from manifests import schema as col
from manifests.io import read_json, read_parquet_files, write_json, write_parquet
from manifests.layout import RunLayout
from manifests.parts import conform_file, unified
from manifests.schema import INGEST_SCHEMA
from pipelines.config import RunConfig
from pipelines.run import repick
from pipelines.run.phase_inputs import rules_digest
from pipelines.run.repick import Duplicates, join_duplicates


# --- assembling rows: ingest rows + scores + duplicates ------------------------------------------

def scores_frame(files: list[Path]) -> pl.LazyFrame | None:
    if not files:
        return None
    scores = pl.scan_parquet([str(f) for f in files])
    return scores.select([c for c in scores.collect_schema().names() if c not in col.ARTEFACT_COLUMNS])


def assemble(layout: RunLayout, duplicates: list[Path] | None = None) -> pl.LazyFrame:
    """Every ingest row left-joined with its scores (and ``duplicates``): the whole run, lazily."""
    frame = pl.from_arrow(read_parquet_files(layout.staged_row_files(), INGEST_SCHEMA)).lazy()
    scores = scores_frame(layout.score_files())
    if scores is not None:
        frame = frame.join(scores, on=col.SAMPLE_ID, how="left")
    return join_duplicates(frame, duplicates)


def unit_frame(layout: RunLayout, unit: str, duplicates: list[Path] | None) -> pl.LazyFrame:
    """One unit's ingest rows left-joined with its scores and ``duplicates``."""
    frame = pl.from_arrow(read_parquet_files([layout.staged_dir / f"{unit}.parquet"], INGEST_SCHEMA)).lazy()
    own = layout.scores_dir / f"{unit}.parquet"  # the score phase names a unit's file after its tar
    scores = scores_frame([own] if own.exists() else layout.score_files())  # else: any layout, read with a join
    if scores is not None:
        frame = frame.join(scores, on=col.SAMPLE_ID, how="left")
    return join_duplicates(frame, duplicates)


# --- which survivors ------------------------------------------------------------------------------

def record_rules(config: RunConfig, layout: RunLayout) -> None:
    """Called by the dedup phase once its survivors are written."""
    write_json({"rules": rules_digest(config)}, layout.rules_json)


def as_dedup_wrote(layout: RunLayout) -> Duplicates | None:
    if layout.duplicates.exists():
        return Duplicates(table=layout.duplicates)
    return Duplicates(parts=layout.duplicates_dir) if layout.duplicates_dir.exists() else None


def current_survivors(config: RunConfig, layout: RunLayout, tasks: Tasks) -> tuple[Duplicates | None, dict]:
    """The duplicates rows under ``config``'s rules (``repick.survivors``), and how they were had."""
    rows = [(u, partial(unit_rows, str(layout.root), u)) for u in units(layout)]
    found, how = repick.survivors(config, layout, read_json(layout.rules_json).get("rules"), rows,
                                  lambda: assemble(layout), repick.Work.of_decide(layout), tasks)
    return found or as_dedup_wrote(layout), {"survivors": how}


# --- tasks ----------------------------------------------------------------------------------------

def units(layout: RunLayout) -> list[str]:
    return [p.stem for p in layout.staged_row_files()]


def unit_rows(root: str, unit: str) -> pl.LazyFrame:
    """One unit's ingest rows with their scores, no duplicate columns: what its eligibility is decided on."""
    return unit_frame(RunLayout.at(root), unit, None)


def eligible_unit(root: str, unit: str, filters: FiltersConfig, out: str | None = None) -> int:
    """Task: which of one unit's rows pass every rule but dedup -> OUT/UNIT.parquet (default dedup/eligible/)."""
    return repick.eligible(partial(unit_rows, root, unit), unit, filters,
                           out or str(RunLayout.at(root).dedup_eligible_dir))


def decide_unit(root: str, unit: str, filters: FiltersConfig, duplicates: Duplicates | None) -> tuple[str, int, int, pl.Schema]:
    """Task: one unit's manifest part; returns (unit, rows, kept, the part's schema)."""
    layout = RunLayout.at(root)
    files = None if duplicates is None else duplicates.files(unit)
    return write_decided(layout, unit, unit_frame(layout, unit, files), filters)


def write_decided(layout: RunLayout, unit: str, frame: pl.LazyFrame, filters: FiltersConfig) -> tuple[str, int, int, pl.Schema]:
    """``frame`` decided -> decide/parts/part-UNIT.parquet; returns (unit, rows, kept, the part's schema)."""
    manifest = apply_decision(frame, filters).sort(col.SAMPLE_ID).collect()
    write_parquet(manifest.to_arrow(), layout.decided_part(unit))
    return unit, manifest.height, int(manifest[col.KEEP].sum()), manifest.schema


def one_schema(layout: RunLayout, found: list[tuple[str, int, int, pl.Schema]], tasks: Tasks) -> None:
    """Rewrite the decided parts whose schema differs from the one unified from every part's."""
    schema = unified([s for *_, s in found])
    tasks(conform_file, [(str(layout.decided_part(u)), schema) for u, _, _, s in found if s != schema])


def decide_partitioned(config: RunConfig, layout: RunLayout, tasks: Tasks) -> dict:
    """decide/parts/ (one schema) and decide/counts.json; returns the totals and how survivors were had."""
    shutil.rmtree(layout.decided_dir, ignore_errors=True)
    layout.decided.unlink(missing_ok=True)  # an older run's one-file decision must not shadow the parts
    duplicates, how = current_survivors(config, layout, tasks)
    found = tasks(decide_unit, [(str(layout.root), u, config.filters, duplicates) for u in units(layout)])
    one_schema(layout, found, tasks)
    write_json({u: [rows, kept] for u, rows, kept, _ in found}, layout.decided_counts)
    return {"rows": sum(f[1] for f in found), "kept": sum(f[2] for f in found), **how}


def kept_counts(layout: RunLayout) -> dict[str, int]:
    """UNIT -> kept rows, as the decision counted them."""
    return {unit: kept for unit, (_, kept) in read_json(layout.decided_counts).items()}
