"""``thresher reexport RUN``: a new decision over a finished run's manifest, part by part, and its own shards.

No model and no Ray: the steps are the decide and export phases' task functions run one after another
in this process (``dedup.plan.local_tasks``), so memory follows one manifest part (one ingest
unit), not the run. The source run is only read; ``manifests.reexport`` says where the export goes.

1. Survivors: when the new rules equal the run's, the manifest's duplicate columns stand; else they are
   re-picked from the stored pairs (``pipelines.run.repick.survivors``, as decide and tune do).
2. Each manifest part is decided again -> ``decide/parts/`` of the export (removed at the end).
3. Shards planned from the per-part kept counts; each shard reads the parts its ranges name.
4. ``manifest/part-UNIT.parquet`` per part, with the new export locations.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import polars as pl

from dedup.plan import local_tasks
from filters.config import FiltersConfig
from manifests import reexport as target_dir
from manifests.export import shard_sizes, write_sizes
from manifests.export_parts import export_shard, write_manifest
from manifests.io import write_json
from manifests.layout import RunLayout
from manifests.shardplan import plan_sizes, spans_by_partition
from pipelines.config import RunConfig
from pipelines.run import repick
from pipelines.run.decide_tasks import one_schema, write_decided

def decide_part(part: str, root: str, filters: FiltersConfig, duplicates: list[Path] | None) -> tuple[str, int, int, pl.Schema]:
    """Task: one manifest part decided again (``duplicates`` None: its own duplicate columns stand)."""
    frame = repick.join_duplicates(repick.bare(Path(part), duplicates is not None), duplicates)
    return write_decided(RunLayout.at(root), RunLayout.unit_of(Path(part)), frame, filters)


def write_reexport(run: Path, config: RunConfig, target: Path, record: dict, config_yaml: str) -> dict:
    """Decide ``run``'s manifest again under ``config`` and write shards + manifest/ to ``target`` (new)."""
    images = target_dir.images_root(run)
    target_dir.check_target(images, target)
    parts = target_dir.manifest_files(RunLayout.at(run))
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    out = RunLayout.at(tmp)
    try:
        found, how = repick.for_manifest(run, parts, config, tmp / "work", local_tasks)
        decided = local_tasks(decide_part, [(str(p), str(tmp), config.filters, repick.part_duplicates(found, p, parts))
                                            for p in parts])
        one_schema(out, decided, local_tasks)
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
