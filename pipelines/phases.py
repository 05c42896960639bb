"""The six phases. Each reads the files of the phases before it under the run directory and writes its own."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import ray
from tqdm import tqdm

from crawl.ingest import ingest_unit, retry_unit, units_to_retry
from crawl.sources import Unit, plan_units
from dedup import run as dedup_run
from filters.decide import decide as apply_decision
from manifests import schema as col
from manifests.export import plan_shards, with_export_locations, write_export_shard, write_sizes
from manifests.io import read_parquet_files, write_parquet
from manifests.layout import RunLayout
from manifests.schema import INGEST_SCHEMA
from pipelines import dedup_tasks, score_units
from pipelines.cluster import READ_NUM_CPUS, pool_args
from pipelines.config import RunConfig
from pipelines.decision import redecide
from pipelines.decode import add_decode
from pipelines.stages import StageSpec

if TYPE_CHECKING:
    from pipelines.run import Run

STAGED_IMAGE_EXTS = ("jpg", "png", "webp")


# --- ingest -------------------------------------------------------------------------------------

class IngestWorker:
    """Ray actor: stages one work unit per call (its own aiohttp session and DNS cache)."""

    def __init__(self, config: RunConfig, root: str, retry_failed: bool = False) -> None:
        self.crawl, self.layout = config.crawl, RunLayout.at(root)
        self.stage = retry_unit if retry_failed else ingest_unit

    def __call__(self, row: dict) -> dict:
        summary = self.stage(Unit(**row["unit"]), self.crawl, self.layout)
        return {"unit": summary["unit"], "rows": summary["rows"]}


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
        ds = ray.data.from_items([{"unit": asdict(u)} for u in pending], override_num_blocks=len(pending))
        ds = ds.map(IngestWorker, fn_constructor_args=(config, str(layout.root), retry_failed),
                    **pool_args(res, cap=len(pending)))
        with tqdm(total=len(pending), desc="ingest", unit="unit") as bar:
            for _ in ds.iter_rows():
                bar.update(1)
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


def _write_dataset(ds: ray.data.Dataset, out_dir: Path) -> None:
    """Write Parquet files into a fresh temporary directory, then swap it in whole."""
    tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex}.tmp")
    ds.write_parquet(str(tmp))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def score(run: Run) -> dict:
    """Score each staged tar into its own unit file; a rerun scores only units without a complete file."""
    config, layout, specs = run.local, run.layout, list(run.score_specs)
    if not specs:
        shutil.rmtree(layout.scores_dir, ignore_errors=True)
        return {"stages": {}, "units_run": 0}
    digest = score_units.stages_digest(specs)
    pending = score_units.pending_units(layout, digest)
    ds = staged_dataset(layout, [layout.staged_dir / f"{name}.tar" for name in sorted(pending)]) if pending else None
    collector = score_units.UnitCollector(layout, pending, digest)
    if ds is not None:
        written = [c for spec in specs for c in spec.writes]
        out = run_stages(add_decode(ds, config, specs), specs)  # decode once, then the model stages
        out = out.select_columns([col.SAMPLE_ID, score_units.PATH, *written])
        with tqdm(total=len(pending), desc="score", unit="unit") as bar:
            for batch in out.iter_batches(batch_format="pyarrow", batch_size=None):
                before = len(collector.committed)
                collector.add(batch)
                bar.update(len(collector.committed) - before)
    return {"stages": {s.name: s.describe() for s in specs}, "units_run": collector.finish()}


# --- dedup --------------------------------------------------------------------------------------

def dedup(run: Run) -> dict:
    """Pairs -> clusters; survivors are chosen among rows the decision keeps on every other rule."""
    config, layout = run.local, run.layout
    layout.duplicates.unlink(missing_ok=True)  # assemble() must not see an earlier dedup's assignments
    shutil.rmtree(layout.duplicates_dir, ignore_errors=True)
    if config.dedup.partitions.enabled:
        return dedup_tasks.run_with_eligibility(config, layout)
    eligible = (apply_decision(assemble(layout), config.filters)
                .select(col.SAMPLE_ID, pl.col(col.KEEP).alias(dedup_run.ELIGIBLE)).collect())
    return dedup_tasks.run(config.dedup, layout, eligible)


# --- decide -------------------------------------------------------------------------------------

def ingested_rows(layout: RunLayout) -> pl.LazyFrame:
    return pl.from_arrow(read_parquet_files(layout.staged_row_files(), INGEST_SCHEMA)).lazy()


def scores_frame(layout: RunLayout) -> pl.LazyFrame | None:
    files = layout.score_files()
    if not files:
        return None
    scores = pl.scan_parquet([str(f) for f in files])
    keep = [c for c in scores.collect_schema().names() if c not in col.ARTEFACT_COLUMNS]
    return scores.select(keep)


def assemble(layout: RunLayout) -> pl.LazyFrame:
    """Ingest rows left-joined with scores and duplicate assignments: one row per input row."""
    frame = ingested_rows(layout)
    scores = scores_frame(layout)
    if scores is not None:
        frame = frame.join(scores, on=col.SAMPLE_ID, how="left")
    if layout.duplicates_files():
        dups = pl.scan_parquet([str(p) for p in layout.duplicates_files()]).select(
            col.SAMPLE_ID, col.CLUSTER_ID, col.DUPLICATE_OF, col.DUP_KIND,
            pl.col(col.SIMILARITY).alias(col.DUP_SIMILARITY))
        frame = frame.join(dups, on=col.SAMPLE_ID, how="left")
    return frame


def decide(run: Run) -> dict:
    """Survivors re-picked from the stored pairs under this config's rules, then keep / reject_reasons."""
    config, layout = run.local, run.layout
    manifest = redecide(assemble(layout), layout, config).sort(col.SAMPLE_ID).collect()
    write_parquet(manifest.to_arrow(), layout.decided)
    return {"rows": manifest.height, "kept": int(manifest[col.KEEP].sum())}


# --- caption ------------------------------------------------------------------------------------

def _only_rows(batch: dict[str, np.ndarray], sample_ids: np.ndarray) -> dict[str, np.ndarray]:
    mask = np.isin(batch[col.SAMPLE_ID].astype(str), sample_ids)
    return {name: values[mask] for name, values in batch.items()}


def kept_dataset(layout: RunLayout) -> ray.data.Dataset | None:
    """Staged images of kept rows only, reading only the staged tars that hold one."""
    kept = pl.scan_parquet(layout.decided).filter(pl.col(col.KEEP)).select(col.SAMPLE_ID, col.SHARD).collect()
    if kept.is_empty():
        return None
    ds = staged_dataset(layout, [layout.root / s for s in sorted(kept[col.SHARD].unique().to_list())])
    if ds is None:
        return None
    return ds.map_batches(_only_rows, fn_args=(kept[col.SAMPLE_ID].to_numpy().astype(str),), batch_format="numpy")


def caption(run: Run) -> dict:
    layout, specs = run.layout, list(run.caption_specs)
    shutil.rmtree(layout.captions.parent / "captions", ignore_errors=True)
    layout.captions.unlink(missing_ok=True)
    ds = kept_dataset(layout) if specs else None
    if ds is not None:
        written = list(dict.fromkeys(c for spec in specs for c in spec.writes))  # caption_status is shared
        out = layout.captions.parent / "captions"
        _write_dataset(run_stages(ds, specs).select_columns([col.SAMPLE_ID, *written]), out)
        write_parquet(read_parquet_files(sorted(out.glob("*.parquet"))), layout.captions)
    return {"stages": {s.name: s.describe() for s in specs}}


# --- export -------------------------------------------------------------------------------------

class ExportWorker:
    def __init__(self, config: RunConfig, root: str, out_dir: str) -> None:
        self.config, self.root, self.out_dir = config.export, Path(root), Path(out_dir)

    def __call__(self, row: dict) -> dict:
        return write_export_shard(row["item"], self.root, self.out_dir, self.config)


def final_manifest(layout: RunLayout) -> pl.DataFrame:
    manifest = pl.scan_parquet(layout.decided)
    if layout.captions.exists():
        manifest = manifest.join(pl.scan_parquet(layout.captions), on=col.SAMPLE_ID, how="left")
    return manifest.sort(col.SAMPLE_ID).collect()


def export(run: Run) -> dict:
    config, layout = run.local, run.layout
    manifest = final_manifest(layout)
    shards = plan_shards(manifest.filter(pl.col(col.KEEP)), config.export.shard_size, config.export.min_shards)
    for leftover in layout.root.glob(".shards.*.tmp"):  # from an export killed midway
        shutil.rmtree(leftover)
    tmp = layout.root / f".shards.{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    written: list[dict] = []
    if shards:
        res = config.resources.export
        ds = ray.data.from_items(shards, override_num_blocks=len(shards))
        ds = ds.map(ExportWorker, fn_constructor_args=(config, str(layout.root), str(tmp)),
                    **pool_args(res, cap=len(shards)))
        with tqdm(total=len(shards), desc="export", unit="shard") as bar:
            for row in ds.iter_rows():
                written.append(row)
                bar.update(1)
    write_sizes(tmp, sorted(written, key=lambda w: w["shard"]))
    shutil.rmtree(layout.shards_dir, ignore_errors=True)
    tmp.rename(layout.shards_dir)
    write_parquet(with_export_locations(manifest, shards).to_arrow(), layout.manifest)
    return {"shards": len(shards), "kept": sum(len(s.rows) for s in shards)}
