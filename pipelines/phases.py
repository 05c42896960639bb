"""The six phases. Each reads the files of the phases before it under the run directory and writes its own."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import ray
from tqdm import tqdm

from crawl.ingest import ingest_unit
from crawl.sources import Unit, plan_units
from dedup import run as dedup_run
from filters.decide import decide as apply_decision
from manifests import schema as col
from manifests.export import plan_shards, write_export_shard
from manifests.io import read_parquet_files, write_parquet
from manifests.layout import RunLayout
from manifests.schema import INGEST_SCHEMA
from pipelines.config import RunConfig
from pipelines.stages import StageSpec, caption_stages, check_stages, score_stages

STAGED_IMAGE_EXTS = ("jpg", "png", "webp")


# --- ingest -------------------------------------------------------------------------------------

class IngestWorker:
    """Ray actor: stages one work unit per call (its own aiohttp session and DNS cache)."""

    def __init__(self, config: RunConfig, root: str) -> None:
        self.crawl, self.layout = config.crawl, RunLayout.at(root)

    def __call__(self, row: dict) -> dict:
        summary = ingest_unit(Unit(**row["unit"]), self.crawl, self.layout)
        return {"unit": summary["unit"], "rows": summary["rows"]}


def ingest(config: RunConfig, layout: RunLayout) -> dict:
    units = plan_units(config.input, layout.units_dir)
    pending = [u for u in units if not layout.staged_rows(u.index).exists()]
    res = config.resources.ingest
    if pending:
        ds = ray.data.from_items([{"unit": asdict(u)} for u in pending], override_num_blocks=len(pending))
        ds = ds.map(IngestWorker, fn_constructor_args=(config, str(layout.root)),
                    concurrency=min(res.concurrency, len(pending)), num_cpus=res.num_cpus)
        with tqdm(total=len(pending), desc="ingest", unit="unit") as bar:
            for _ in ds.iter_rows():
                bar.update(1)
    return {"units": len(units), "units_run": len(pending)}


# --- score and caption: model stages over the staged images ------------------------------------

def _stage_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """WebDataset columns -> the batch contract: sample_id, image (encoded bytes), caption."""
    image = next(batch[e] for e in STAGED_IMAGE_EXTS if e in batch)
    captions = np.array([b.decode("utf-8") if b is not None else "" for b in batch["txt"]], dtype=object)
    return {col.SAMPLE_ID: batch["__key__"], col.IMAGE: image, col.CAPTION: captions}


def staged_dataset(layout: RunLayout) -> ray.data.Dataset | None:
    tars = [str(p) for p in layout.staged_tars() if p.stat().st_size > 1024]  # an empty tar is 1 KiB of padding
    if not tars:
        return None
    return ray.data.read_webdataset(tars, decoder=None).map_batches(_stage_batch, batch_format="numpy")


def run_stages(ds: ray.data.Dataset, specs: list[StageSpec]) -> ray.data.Dataset:
    for spec in specs:
        res = spec.resources
        ds = ds.map_batches(spec.cls, fn_constructor_args=(spec.config,), batch_size=res.batch_size,
                            batch_format="numpy", num_cpus=res.num_cpus, num_gpus=res.num_gpus,
                            concurrency=res.concurrency)
    return ds


def _write_dataset(ds: ray.data.Dataset, out_dir: Path) -> None:
    """Write Parquet files into a fresh temporary directory, then swap it in whole."""
    tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex}.tmp")
    ds.write_parquet(str(tmp))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def score(config: RunConfig, layout: RunLayout) -> dict:
    specs = score_stages(config)
    check_stages(config, specs)
    ds = staged_dataset(layout)
    shutil.rmtree(layout.scores_dir, ignore_errors=True)
    if specs and ds is not None:
        written = [c for spec in specs for c in spec.writes]
        _write_dataset(run_stages(ds, specs).select_columns([col.SAMPLE_ID, *written]), layout.scores_dir)
    return {"stages": {s.name: s.describe() for s in specs}}


# --- dedup --------------------------------------------------------------------------------------

def dedup(config: RunConfig, layout: RunLayout) -> dict:
    return dedup_run.run_dedup(config.dedup, layout)


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
    if layout.duplicates.exists():
        dups = pl.scan_parquet(layout.duplicates).select(
            col.SAMPLE_ID, col.CLUSTER_ID, col.DUPLICATE_OF, col.DUP_KIND,
            pl.col(col.SIMILARITY).alias(col.DUP_SIMILARITY))
        frame = frame.join(dups, on=col.SAMPLE_ID, how="left")
    return frame


def decide(config: RunConfig, layout: RunLayout) -> dict:
    manifest = apply_decision(assemble(layout), config.filters).sort(col.SAMPLE_ID).collect()
    write_parquet(manifest.to_arrow(), layout.decided)
    return {"rows": manifest.height, "kept": int(manifest[col.KEEP].sum())}


# --- caption ------------------------------------------------------------------------------------

def caption(config: RunConfig, layout: RunLayout) -> dict:
    specs = caption_stages(config)
    check_stages(config, specs)
    shutil.rmtree(layout.captions.parent / "captions", ignore_errors=True)
    layout.captions.unlink(missing_ok=True)
    ds = staged_dataset(layout)
    if specs and ds is not None:
        kept = set(pl.scan_parquet(layout.decided).filter(pl.col(col.KEEP)).select(col.SAMPLE_ID)
                   .collect()[col.SAMPLE_ID].to_list())
        ds = ds.filter(lambda row: row[col.SAMPLE_ID] in kept)
        written = [c for spec in specs for c in spec.writes]
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


def export(config: RunConfig, layout: RunLayout) -> dict:
    manifest = final_manifest(layout)
    shards = plan_shards(manifest.filter(pl.col(col.KEEP)), config.export.shard_size)
    tmp = layout.root / f".shards.{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    if shards:
        res = config.resources.export
        ds = ray.data.from_items(shards, override_num_blocks=len(shards))
        ds = ds.map(ExportWorker, fn_constructor_args=(config, str(layout.root), str(tmp)),
                    concurrency=min(res.concurrency, len(shards)), num_cpus=res.num_cpus)
        with tqdm(total=len(shards), desc="export", unit="shard") as bar:
            for _ in ds.iter_rows():
                bar.update(1)
    shutil.rmtree(layout.shards_dir, ignore_errors=True)
    tmp.rename(layout.shards_dir)
    write_parquet(manifest.to_arrow(), layout.manifest)
    return {"shards": len(shards), "kept": sum(len(s.rows) for s in shards)}
