"""The six phases, ``PHASES``: each reads the files of the phases before it under the run directory and writes its
own folder (``manifests.layout.PHASE_NAMES``, the same names in the same order)."""

from __future__ import annotations

import functools
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import polars as pl
import ray
from tqdm import tqdm

from crawl.ingest import ingest_unit, retry_unit, units_to_retry
from crawl.sources import Unit, plan_units
from manifests import schema as col
from manifests.export import shard_sizes, write_sizes
from manifests.export_parts import captions_schema, export_shard, write_manifest
from manifests.io import parquet_rows, read_json, write_json, write_parquet
from manifests.layout import RunLayout
from manifests.shardplan import ShardRange, plan_sizes, spans_by_partition
from pipelines.config import RunConfig
from pipelines.run import decide_tasks, tasks as dedup_tasks, progress, score_units
from pipelines.run.cluster import READ_NUM_CPUS, Pool, decode_pool, dedup_pools, pool_args, stage_pools
from pipelines.run.decode import add_decode
from pipelines.run.stages import StageSpec

if TYPE_CHECKING:
    from pipelines.run.prepared import Run

STAGED_IMAGE_EXTS = ("jpg", "png", "webp")
UNIT = "unit"  # the ingest unit of a caption row: its hive partition under caption/captions/


# --- ingest -------------------------------------------------------------------------------------

class IngestWorker:
    """Ray actor: stages one work unit per call (its own aiohttp session and DNS cache), telling ``counter``
    (a ``progress.RowCounter``) its rows as they finish."""

    def __init__(self, config: RunConfig, root: str, retry_failed: bool = False,
                 counter: ray.actor.ActorHandle | None = None) -> None:
        self.crawl, self.layout = config.crawl, RunLayout.at(root)
        self.stage = retry_unit if retry_failed else ingest_unit
        self.reporter = progress.RowReporter(counter)

    def __call__(self, row: dict) -> dict:
        try:
            summary = self.stage(Unit(**row["unit"]), self.crawl, self.layout, on_row=self.reporter)
        finally:
            self.reporter.flush()
        return {"unit": summary["unit"], "rows": summary["rows"]}


def unit_rows(units: list[Unit]) -> int | None:
    """Input rows of the units, from their Parquet footers; None when a unit is an input tar (not counted)."""
    if any(u.kind == "webdataset" for u in units):
        return None
    return parquet_rows([u.path for u in units])


def ingest(run: Run) -> dict:
    """Stage every unit without a staged Parquet; with ``run.retry_failed``, refetch the retryable rows of staged units."""
    config, layout, retry_failed = run.local, run.layout, run.retry_failed
    for leftover in layout.staged_dir.glob(".*.tmp"):  # half-written by a killed run; no worker runs now
        leftover.unlink()
    units = plan_units(config.input, layout.units_dir)
    if retry_failed:
        pending = units_to_retry(units, layout)
    else:
        pending = [u for u in units if not layout.staged_rows(u.index).exists()]
    res = config.resources.ingest
    if pending:
        with progress.row_bar("ingest", None if retry_failed else unit_rows(pending)) as counter:
            ds = ray.data.from_items([{"unit": asdict(u)} for u in pending], override_num_blocks=len(pending))
            ds = ds.map(IngestWorker, fn_constructor_args=(config, str(layout.root), retry_failed, counter),
                        **pool_args(res, cap=len(pending)))
            for _ in ds.iter_rows():
                pass
    return {"units": len(units), "units_run": len(pending)}


# --- score and caption: model stages over the staged images ------------------------------------

def _stage_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """WebDataset columns -> the batch contract: sample_id, image (encoded bytes), caption."""
    image = next(batch[e] for e in STAGED_IMAGE_EXTS if e in batch)
    captions = np.array([b.decode("utf-8") if b is not None else "" for b in batch["txt"]], dtype=object)
    # The content box ingest recorded (tar member ".box"); staged before it existed: None, the whole image.
    boxes = batch.get("box", np.full(len(image), None, dtype=object))
    return {col.SAMPLE_ID: batch["__key__"], col.IMAGE: image, col.CAPTION: captions,
            score_units.PATH: batch[score_units.PATH], col.CONTENT_BOX: boxes}


def staged_dataset(layout: RunLayout, only: list[Path] | None = None) -> ray.data.Dataset | None:
    """The staged images as score batches, with their tar in column ``path``; ``only`` restricts the read."""
    candidates = layout.staged_tars() if only is None else only
    tars = [str(p) for p in candidates if p.stat().st_size > 1024]  # an empty tar is 1 KiB of padding
    if not tars:
        return None
    return (ray.data.read_webdataset(tars, decoder=None, include_paths=True, num_cpus=READ_NUM_CPUS)
            .map_batches(_stage_batch, batch_format="numpy", num_cpus=READ_NUM_CPUS))


def run_stages(ds: ray.data.Dataset, specs: list[StageSpec]) -> ray.data.Dataset:
    for spec in specs:
        res = spec.resources
        ds = ds.map_batches(spec.cls, fn_constructor_args=(spec.config,), batch_size=res.batch_size,
                            batch_format="numpy", **pool_args(res))
    return ds


def _write_dataset(ds: ray.data.Dataset, out_dir: Path, partition_cols: list[str] | None = None) -> None:
    """Write Parquet files into a fresh temporary directory, then swap it in whole."""
    tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex}.tmp")
    ds.write_parquet(str(tmp), partition_cols=partition_cols)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def score(run: Run) -> dict:
    """Score each staged tar into its own unit file; a rerun scores only units without a complete file."""
    config, layout, specs = run.local, run.layout, list(run.score_specs)
    if not specs:
        shutil.rmtree(layout.scores_dir, ignore_errors=True)
        return {"stages": {}, "units_run": 0}
    digest = score_units.stages_digest(specs)
    pending = score_units.pending_units(layout, score_units.accepted_digests(specs))
    ds = staged_dataset(layout, [layout.staged_dir / f"{name}.tar" for name in sorted(pending)]) if pending else None
    collector = score_units.UnitCollector(layout, pending, digest)
    if ds is not None:
        written = [c for spec in specs for c in spec.writes]
        out = run_stages(add_decode(ds, config, specs), specs)  # decode once, then the model stages
        out = out.select_columns([col.SAMPLE_ID, score_units.PATH, *written])
        with tqdm(total=sum(len(ids) for ids in pending.values()), desc="score", unit="row") as bar:
            for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
                collector.add(batch)
                bar.update(min(batch.num_rows, bar.total - bar.n))  # a retried task's rows count once
    return {"stages": {s.name: s.describe() for s in specs}, "units_run": collector.finish()}


# --- dedup --------------------------------------------------------------------------------------

def dedup(run: Run) -> dict:
    """Pairs -> clusters; survivors are chosen among rows the decision keeps on every other rule."""
    config, layout = run.local, run.layout
    layout.rules_json.unlink(missing_ok=True)  # the engine clears its outputs before any work (run_partitioned)
    found = dedup_tasks.run_with_eligibility(config, layout)
    decide_tasks.record_rules(config, layout)
    return found


# --- decide -------------------------------------------------------------------------------------

def decide(run: Run) -> dict:
    """Survivors for this config's rules, then keep / reject_reasons per ingest unit (decide/parts/)."""
    tasks = dedup_tasks.RayTasks()
    return {**decide_tasks.decide_partitioned(run.local, run.layout, tasks), "task_nodes": sorted(tasks.nodes)}


# --- caption ------------------------------------------------------------------------------------
# Captions are per kept row: a rerun under new thresholds keeps every caption of a row still kept,
# drops those of rows no longer kept and captions only the newly kept rows (all again when the caption
# stages changed). caption/.todo.*.tmp/UNIT.parquet lists, for one run of the phase, the ids to caption.

@functools.lru_cache(maxsize=8)  # a reader task's batches come from one or two tars at a time
def _wanted_ids(path: str) -> np.ndarray:
    return pl.read_parquet(path, columns=[col.SAMPLE_ID])[col.SAMPLE_ID].to_numpy().astype(str)


def _kept_only(batch: dict[str, np.ndarray], todo: str) -> dict[str, np.ndarray]:
    """The batch's rows still to caption, each unit's ids read from its own todo file; adds ``unit``."""
    unit = np.array([Path(p).stem for p in batch[score_units.PATH]], dtype=object)
    ids = batch[col.SAMPLE_ID].astype(str)
    mask = np.zeros(len(unit), dtype=bool)
    for name in set(unit):
        rows = unit == name
        mask[rows] = np.isin(ids[rows], _wanted_ids(str(Path(todo) / f"{name}.parquet")))
    return {UNIT: unit[mask], **{name: values[mask] for name, values in batch.items()}}


def kept_dataset(layout: RunLayout, todo: Path, units: list[str]) -> ray.data.Dataset | None:
    """Staged images of the rows listed in ``todo``/UNIT.parquet, reading only the staged tars of ``units``."""
    ds = staged_dataset(layout, [layout.staged_dir / f"{u}.tar" for u in units]) if units else None
    return None if ds is None else ds.map_batches(_kept_only, fn_args=(str(todo),), batch_format="numpy")


def _captioned_ids(files: list[Path]) -> set[str]:
    return set(pl.scan_parquet([str(f) for f in files], hive_partitioning=False).select(col.SAMPLE_ID)
               .collect()[col.SAMPLE_ID].to_list()) if files else set()


def caption_todo(layout: RunLayout, todo: Path) -> list[str]:
    """Per unit, drop the captions of rows no longer kept and write the kept ids without one to
    ``todo``/UNIT.parquet; returns the units with rows to caption."""
    kept = decide_tasks.kept_counts(layout)
    for folder in layout.captions_dir.glob("unit=*"):
        if folder.name.removeprefix("unit=") not in kept:
            shutil.rmtree(folder)
    pending = []
    for unit, count in kept.items():
        files = layout.unit_captions(unit)
        ids = set(pl.read_parquet(layout.decided_part(unit), columns=[col.SAMPLE_ID, col.KEEP])
                  .filter(pl.col(col.KEEP))[col.SAMPLE_ID].to_list()) if count else set()
        if _captioned_ids(files) - ids:
            for f in files:
                still = pl.read_parquet(f, hive_partitioning=False).filter(pl.col(col.SAMPLE_ID).is_in(sorted(ids)))
                if still.height:
                    write_parquet(still.to_arrow(), f)
                else:
                    f.unlink()
        missing = sorted(ids - _captioned_ids(layout.unit_captions(unit)))
        if missing:
            write_parquet(pl.DataFrame({col.SAMPLE_ID: missing}).to_arrow(), todo / f"{unit}.parquet")
            pending.append(unit)
    return pending


def _merge_captions(new: Path, captions_dir: Path) -> None:
    """Move each unit's new caption files beside its existing ones (a unique name each)."""
    for path in sorted(new.glob("unit=*/*.parquet")):
        target = captions_dir / path.parent.name / f"{uuid.uuid4().hex}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)


def caption(run: Run) -> dict:
    """Recaptions of the kept rows without one, written per unit: caption/captions/unit=UNIT/."""
    layout, specs = run.layout, list(run.caption_specs)
    layout.captions.unlink(missing_ok=True)
    stamp, digest = layout.root / "caption" / "stages.json", score_units.stages_digest(specs)
    if not specs or not stamp.exists() or read_json(stamp).get("stages") != digest:
        shutil.rmtree(layout.captions_dir, ignore_errors=True)  # other captioners: every caption again
    for leftover in (layout.root / "caption").glob(".*.tmp"):  # a killed caption phase's
        shutil.rmtree(leftover)
    # A name of its own per run: reader workers outlive a run and cache the lists they read by path.
    todo = layout.root / "caption" / f".todo.{uuid.uuid4().hex}.tmp"
    units = caption_todo(layout, todo) if specs else []
    rows = pl.scan_parquet(str(todo / "*.parquet")).select(pl.len()).collect().item() if units else 0
    ds = kept_dataset(layout, todo, units)
    if ds is not None:
        written = list(dict.fromkeys(c for spec in specs for c in spec.writes))  # caption_status is shared
        new = layout.root / "caption" / f".new.{uuid.uuid4().hex}.tmp"
        _write_dataset(run_stages(ds, specs).select_columns([col.SAMPLE_ID, UNIT, *written]), new,
                       partition_cols=[UNIT])
        _merge_captions(new, layout.captions_dir)
        shutil.rmtree(new)
    shutil.rmtree(todo, ignore_errors=True)
    write_json({"stages": digest}, stamp)
    return {"stages": {s.name: s.describe() for s in specs}, "rows_captioned": rows}


# --- export -------------------------------------------------------------------------------------

class ExportWorker:
    def __init__(self, config: RunConfig, root: str, out_dir: str, captions: pl.Schema) -> None:
        self.config, self.root, self.out_dir, self.captions = config.export, root, out_dir, captions

    def __call__(self, row: dict) -> dict:
        ranges = [ShardRange(*r) for r in zip(row["partitions"], row["starts"], row["stops"])]
        return export_shard(self.root, self.root, row["index"], ranges, self.captions, self.out_dir, self.config)


def export(run: Run) -> dict:
    """Shards planned from the per-unit kept counts; each task reads only its units; manifest/ per unit."""
    config, layout = run.local, run.layout
    kept = decide_tasks.kept_counts(layout)
    sizes = shard_sizes(sum(kept.values()), config.export.shard_size, config.export.min_shards)
    plan = plan_sizes(kept, sizes)
    captions = captions_schema(layout)
    for leftover in [*layout.root.glob(".shards.*.tmp"), *layout.root.glob(".manifest.*.tmp")]:  # a killed export
        shutil.rmtree(leftover)
    tmp = layout.root / f".shards.{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    written: list[dict] = []
    if plan:
        items = [{"index": i, "partitions": [r.partition for r in ranges], "starts": [r.start for r in ranges],
                  "stops": [r.stop for r in ranges]} for i, ranges in enumerate(plan)]  # Arrow columns, not pickles
        ds = ray.data.from_items(items, override_num_blocks=len(plan))
        ds = ds.map(ExportWorker, fn_constructor_args=(config, str(layout.root), str(tmp), captions),
                    **pool_args(config.resources.export, cap=len(plan)))
        with tqdm(total=len(plan), desc="export", unit="shard") as bar:
            for row in ds.iter_rows():
                written.append(row)
                bar.update(1)
    write_sizes(tmp, sorted(written, key=lambda w: w["shard"]))
    shutil.rmtree(layout.shards_dir, ignore_errors=True)
    tmp.rename(layout.shards_dir)
    rows = write_manifest(layout, sorted(kept), spans_by_partition(plan), captions, dedup_tasks.RayTasks(),
                          config.export.manifest_file)
    return {"shards": len(plan), "kept": sum(sizes), "rows": rows}


# --- the table ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """One phase: its name (its folder), the function that runs it, the actor pools it starts (for the cluster
    check) and why it has nothing to do, if so (it draws no bar then)."""

    name: str
    run: Callable[[Run], dict]
    pools: Callable[[Run], list[Pool]]
    idle: Callable[[Run], str | None] = lambda run: None

    def __call__(self, run: Run) -> dict:
        return self.run(run)


def _no_pools(run: Run) -> list[Pool]:
    return []


PHASES = (
    Phase("ingest", ingest, lambda r: [Pool("resources.ingest", r.config.resources.ingest)]),
    Phase("score", score, lambda r: stage_pools(r.score_specs) + decode_pool(r.config, r.score_specs)),
    Phase("dedup", dedup, lambda r: dedup_pools(r.config),
          lambda r: None if r.config.dedup.enabled_detectors() else "no duplicate detector enabled"),
    Phase("decide", decide, _no_pools),
    Phase("caption", caption, lambda r: stage_pools(r.caption_specs),
          lambda r: None if r.caption_specs else "no captioner enabled"),
    Phase("export", export, lambda r: [Pool("resources.export", r.config.resources.export)]),
)
