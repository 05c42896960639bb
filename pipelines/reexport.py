"""``thresher reexport RUN``: a new decision over a finished run's manifest, part by part, and its own shards.

No model and no Ray: the steps are the decide and export phases' task functions run one after another
in this process (``dedup.partitioned.local_tasks``), so memory follows one manifest part (one ingest
unit), not the run. The source run is only read; ``manifests.reexport`` says where the export goes.

1. Survivors: when the new rules equal the run's, the manifest's duplicate columns stand; else they are
   re-picked from the stored pairs (partitioned pairs: eligibility per part, then the partitioned
   components and groups; one-file pairs: in one process, memory ~ the paired rows).
2. Each manifest part is decided again -> ``decide/parts/`` of the export (removed at the end).
3. Shards planned from the per-part kept counts; each shard reads the parts its ranges name.
4. ``manifest/part-UNIT.parquet`` per part, with the new export locations.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import polars as pl

from dedup.partitioned import Survivors, local_tasks, recluster_partitioned
from dedup.survivors import DUP_COLUMNS, ELIGIBLE
from filters.config import FiltersConfig
from filters.decide import decide, passes_rules
from manifests import reexport as target_dir
from manifests import schema as col
from manifests.export import shard_sizes, write_sizes
from manifests.export_parts import export_shard, write_manifest
from manifests.io import write_json, write_parquet
from manifests.layout import RunLayout
from manifests.parts import conform_file, unified
from manifests.shardplan import plan_sizes, spans_by_partition
from pipelines import decision
from pipelines.config import RunConfig, load_config
from pipelines.decide_tasks import Duplicates, rules_digest, with_duplicates

EXPORT_COLUMNS = (col.EXPORT_SHARD, col.EXPORT_MEMBER)


def _bare(part: Path, duplicates: bool = True) -> pl.LazyFrame:
    """A manifest part without its export location and (``duplicates``) its duplicate columns."""
    frame = pl.scan_parquet(part)
    names = frame.collect_schema().names()
    return frame.drop([c for c in (*(DUP_COLUMNS if duplicates else ()), *EXPORT_COLUMNS) if c in names])


def eligible_part(part: str, filters: FiltersConfig, out: str) -> int:
    """Task: which rows of one manifest part pass every rule but dedup -> OUT/UNIT.parquet."""
    frame = passes_rules(_bare(Path(part)), filters).select(col.SAMPLE_ID, pl.col(col.KEEP).alias(ELIGIBLE)).collect()
    write_parquet(frame.to_arrow(), Path(out) / f"{RunLayout.unit_of(Path(part))}.parquet")
    return frame.height


def decide_part(part: str, root: str, filters: FiltersConfig, duplicates: list[Path] | None) -> tuple[str, int, int, pl.Schema]:
    """Task: one manifest part decided again (``duplicates`` None: its own duplicate columns stand)."""
    decided = decide(with_duplicates(_bare(Path(part), duplicates is not None), duplicates or []), filters).sort(col.SAMPLE_ID).collect()
    unit = RunLayout.unit_of(Path(part))
    write_parquet(decided.to_arrow(), RunLayout.at(root).decided_part(unit))
    return unit, decided.height, int(decided[col.KEEP].sum()), decided.schema


def survivors(run: Path, parts: list[Path], config: RunConfig, work: Path) -> tuple[Duplicates | None, str]:
    """Where each part's duplicates rows are under ``config``; None: the manifest's own columns stand."""
    pairs = decision.pairs_layout(run)
    if not pairs.pairs_files():
        return None, "no stored pairs"
    if rules_digest(config) == rules_digest(load_config(run)):
        return None, "as the run picked them (same rules)"
    if pairs.pairs.exists():  # the one-process dedup's pairs
        found = decision.current_duplicates(pl.scan_parquet([str(p) for p in parts]), pairs, config)
        write_parquet(found.to_arrow(), work / "duplicates.parquet")
        return Duplicates(table=work / "duplicates.parquet"), "re-picked in one process"
    local_tasks(eligible_part, [(str(p), config.filters, str(work / "eligible")) for p in parts])
    into = Survivors(work / "duplicates", work / "shuffle", sorted((work / "eligible").glob("*.parquet")))
    recluster_partitioned(config.dedup, pairs, local_tasks, into=into)
    return Duplicates(parts=work / "duplicates"), "re-picked by tasks"


def _duplicates_of(found: Duplicates | None, part: Path, one_file: bool) -> list[Path] | None:
    if found is None:
        return None
    if one_file and found.parts is not None:  # one manifest file: every unit's duplicates
        return sorted(found.parts.rglob("*.parquet"))
    return found.files(RunLayout.unit_of(part))


def write_reexport(run: Path, config: RunConfig, target: Path, record: dict, config_yaml: str) -> dict:
    """Decide ``run``'s manifest again under ``config`` and write shards + manifest/ to ``target`` (new)."""
    images = target_dir.images_root(run)
    target_dir.check_target(images, target)
    parts = target_dir.manifest_files(RunLayout.at(run))
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    out = RunLayout.at(tmp)
    try:
        found, how = survivors(run, parts, config, tmp / "work")
        one_file = not parts[0].name.startswith("part-")  # manifest.parquet: not split by unit
        decided = local_tasks(decide_part, [(str(p), str(tmp), config.filters, _duplicates_of(found, p, one_file))
                                            for p in parts])
        schema = unified([s for *_, s in decided])
        local_tasks(conform_file, [(str(out.decided_part(u)), schema) for u, _, _, s in decided if s != schema])
        kept = {unit: k for unit, _, k, _ in decided}
        sizes = shard_sizes(sum(kept.values()), config.export.shard_size, config.export.min_shards)
        plan = plan_sizes(kept, sizes)
        out.shards_dir.mkdir(parents=True)
        written = local_tasks(export_shard, [(str(tmp), str(images), i, r, pl.Schema(), str(out.shards_dir), config.export)
                                             for i, r in enumerate(plan)])
        write_sizes(out.shards_dir, written)
        write_manifest(out, sorted(kept), spans_by_partition(plan), pl.Schema(), local_tasks, config.export.manifest_file)
        shutil.rmtree(tmp / "decide")
        shutil.rmtree(tmp / "work", ignore_errors=True)
        out.config.write_text(config_yaml)
        summary = {"rows": sum(d[1] for d in decided), "kept": sum(sizes), "shards": len(plan), "survivors": how}
        write_json({**record, **summary, "source_run": str(images.resolve())}, tmp / target_dir.RECORD)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary
