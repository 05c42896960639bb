"""The fast in-process mode of bench/neardup_eval.py, descriptor cost per image, and search cost at 1M images.

Fast mode does what a run does to each image, in this process and without Ray or HTTP: ingest's
``crawl.image.stage_image`` (``border`` resize to 256, content box, re-encode), the shared decode
(``manifests.images.prepare``: content region), every enabled dedup score stage's ``__call__`` (the classes
``pipelines.run.stages.score_stages`` picks, so a new descriptor stage is picked up), one score Parquet file, and the
one-process dedup phase ``support.dedup_reference.run_dedup`` (pairs, clusters, ``cluster_id``). Its descriptors are a run's;
what differs from a run is the dedup phase (one process, not partitioned tasks: the same pairs and clusters,
as tests/dedup/test_partitioned.py checks), no manifest/decision, and sample ids (the URL path here).

A sweep from Python (the staged set and, for dedup-phase settings, the scores are computed once per process)::

    from bench.neardup_eval import build_set, run_fast
    files, labels = build_set("tune")
    for q in (30, 40, 50):
        r = run_fast(files, labels, "tune", ["pdq_regions"], [f"dedup.pdq.min_quality={q}"], Path("/tmp/w"))
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from crawl.image import stage_image
from dedup.artefacts import SampleIndex
from dedup.config import DETECTORS
from manifests import schema as col
from manifests.images import DECODED, prepare
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import Status

BATCH = 64
DESCRIPTOR_STAGES = {d.name for d in DETECTORS if d.stage}


def staged(files: tuple[tuple[str, bytes], ...], crawl) -> dict[str, np.ndarray]:
    """Ingest of every served file, as one batch: sample_id (= path), image bytes, content_box, sha256, sizes."""
    rows = []
    for path, data in files:
        s = stage_image(data, crawl)
        if s.status != Status.SUCCESS:
            raise RuntimeError(f"{path} did not stage: {s.status} {s.error}")
        rows.append((path, s.data, ",".join(map(str, s.content_box)).encode(), hashlib.sha256(data).hexdigest(),
                     s.original_width, s.original_height))
    names = (col.SAMPLE_ID, col.IMAGE, col.CONTENT_BOX, col.SHA256, col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT)
    return {name: np.array([r[k] for r in rows], dtype=object) for k, name in enumerate(names)}


@lru_cache(maxsize=4)
def staged_cached(files: tuple[tuple[str, bytes], ...], image_size: int, resize_mode: str) -> dict[str, np.ndarray]:
    from crawl.config import CrawlConfig

    return staged(files, CrawlConfig(image_size=image_size, resize_mode=resize_mode))


def descriptor_specs(config) -> list:
    from pipelines.run.stages import score_stages

    return [s for s in score_stages(config) if s.name in DESCRIPTOR_STAGES]


def score(config, batch: dict[str, np.ndarray]) -> tuple[pa.Table, dict]:
    """(score table of the descriptor stages, CPU seconds per image (this process, every thread): decode + content
    crop, then each stage). CPU time, not wall time: on a shared machine waiting for a core is not the stage's cost."""
    specs = descriptor_specs(config)
    stages = [(s.name, s.cls(s.config), tuple(s.cls.needs(s.config)) if hasattr(s.cls, "needs") else (), s.writes)
              for s in specs]
    needs = tuple(dict.fromkeys(n for _, _, ns, _ in stages for n in ns))
    n = len(batch[col.SAMPLE_ID])
    columns: dict[str, list] = {c: [] for _, _, _, writes in stages for c in writes}
    seconds = {"decode": 0.0, **{name: 0.0 for name, *_ in stages}}
    for start in range(0, n, BATCH):
        part = {k: batch[k][start:start + BATCH] for k in (col.SAMPLE_ID, col.IMAGE, col.CONTENT_BOX)}
        part[col.CAPTION] = np.array([""] * len(part[col.SAMPLE_ID]), dtype=object)
        t = time.process_time()
        part = prepare(part, needs)
        seconds["decode"] += time.process_time() - t
        if not part[DECODED].all():
            raise RuntimeError("a staged image did not decode")
        for name, stage, _, writes in stages:
            t = time.process_time()
            out = stage(dict(part))
            seconds[name] += time.process_time() - t
            for c in writes:
                columns[c].extend(out[c].tolist())
    table = pa.table({col.SAMPLE_ID: batch[col.SAMPLE_ID].tolist(), **columns})
    return table, {k: v / n for k, v in seconds.items()}


def descriptor_cost(config, batch: dict[str, np.ndarray], sample: int = 128, repeats: int = 3) -> dict:
    """CPU milliseconds per image of the decode (to the content region) and of each descriptor stage's ``__call__``
    on ``sample`` images spread over the set, the least of ``repeats`` passes (a loaded machine still costs some
    cache misses; the least pass is the closest to the cost itself)."""
    pick = np.linspace(0, len(batch[col.SAMPLE_ID]) - 1, min(sample, len(batch[col.SAMPLE_ID]))).astype(int)
    part = {k: batch[k][pick] for k in (col.SAMPLE_ID, col.IMAGE, col.CONTENT_BOX)}
    best: dict[str, float] = {}
    for _ in range(repeats):
        _, seconds = score(config, part)
        best = {k: min(v, best.get(k, v)) for k, v in seconds.items()}
    return {k: round(v * 1e3, 3) for k, v in best.items()}


def dedup(config, batch: dict[str, np.ndarray], scores: pa.Table,
          work: Path) -> tuple[pl.DataFrame, dict[str, str | None]]:
    """The one-process dedup phase on ``scores``: (pairs with url_a/url_b, path -> cluster_id or None)."""
    from support.dedup_reference import run_dedup

    layout = RunLayout.at(work)
    layout.staged_dir.mkdir(parents=True, exist_ok=True)
    layout.scores_dir.mkdir(parents=True, exist_ok=True)
    rows = pa.table({col.SAMPLE_ID: batch[col.SAMPLE_ID].tolist(), col.STATUS: [Status.SUCCESS] * len(scores),
                     col.SHA256: batch[col.SHA256].tolist(),
                     col.ORIGINAL_WIDTH: pa.array(batch[col.ORIGINAL_WIDTH].tolist(), pa.int32()),
                     col.ORIGINAL_HEIGHT: pa.array(batch[col.ORIGINAL_HEIGHT].tolist(), pa.int32())})
    write_parquet(rows, layout.staged_rows(0))
    write_parquet(scores, layout.scores_dir / "00000.parquet")
    dedup_config = config.dedup.model_copy(update={"partitions": config.dedup.partitions.model_copy(
        update={"enabled": False})})
    run_dedup(dedup_config, layout)
    pairs = pl.read_parquet(layout.pairs).rename({"sample_a": "url_a", "sample_b": "url_b"})
    clusters = dict.fromkeys(batch[col.SAMPLE_ID].tolist())
    duplicates = pl.read_parquet(layout.duplicates)
    clusters.update(dict(duplicates.select(col.SAMPLE_ID, col.CLUSTER_ID).iter_rows()))
    return pairs, clusters


_SCORED: dict[tuple[int, str], tuple[pa.Table, dict]] = {}  # (set, stages' describe()) -> scores: sweeps of
# dedup-phase settings (thresholds, min_quality, verification) rescore nothing


def fast_run(config, files: dict[str, bytes]) -> tuple[pl.DataFrame, dict[str, str | None], dict]:
    """(pairs, clusters, descriptor seconds per image) of ``files`` under ``config``, all in this process; the
    staged set and the scores of a stage configuration already seen in this process are reused."""
    key = tuple(files.items())
    batch = staged_cached(key, config.crawl.image_size, config.crawl.resize_mode)
    stages = (hash(key), json.dumps([s.describe() for s in descriptor_specs(config)], sort_keys=True, default=str))
    if stages not in _SCORED:
        _SCORED.clear()  # one set's scores at a time: memory stays one set's
        _SCORED[stages] = score(config, batch)
    scores, seconds = _SCORED[stages]
    with tempfile.TemporaryDirectory(prefix="neardup-fast-") as work:
        pairs, clusters = dedup(config, batch, scores, Path(work))
    return pairs, clusters, seconds


def search_cost(config, scores: pa.Table, sizes: tuple[int, ...] = (10_000, 20_000, 40_000)) -> dict:
    """CPU and wall seconds of the one-process PDQ finder (``dedup.detectors.pdq_pairs``) on ``sizes`` synthetic
    samples (least of 2 passes, after a warm-up), and a power-law fit of the CPU seconds extrapolated to 1M. Each
    synthetic sample is one of the set's real ``pdq_codes`` rows with every code XOR-ed by one random 256-bit mask
    (its qualities, colour signature and region structure kept, its codes unrelated to every other row's), so the
    cost is the index's, with few pairs; ``search.exact_max`` is set to 1 so the sizes take the IVF path that a 1M
    run (about 10M region codes) takes. A fit over 10-40k samples is an estimate: IVF with sqrt(n) lists costs
    ~n^1.5."""
    from dedup.detectors import pdq_pairs
    from dedup.pdq import row_width

    pdq = config.dedup.pdq.model_copy(update={"verify": config.dedup.pdq.verify.model_copy(update={"enabled": False})})
    search = config.dedup.search.model_copy(update={"exact_max": 1, "use_gpu": False})
    real = scores.filter(pa.compute.is_valid(scores[col.PDQ_CODES]))
    codes = np.stack([np.frombuffer(v, np.uint8) for v in real[col.PDQ_CODES].to_pylist()])
    quality = np.array(real[col.PDQ_QUALITY].to_pylist())
    r = len(pdq.regions)
    rng = np.random.default_rng(0)
    out = []
    for n in (2_000, *sizes):  # the first is a warm-up
        pick = rng.integers(0, len(codes), n)
        rows = codes[pick].copy()
        rows[:, r:] ^= np.tile(rng.integers(0, 256, (n, 32), dtype=np.uint8), (row_width(pdq) - r) // 32)
        ids = [f"{k:08d}" for k in range(n)]
        with tempfile.TemporaryDirectory(prefix="neardup-search-") as work:
            path = Path(work) / "scores.parquet"
            colour = {col.PDQ_COLOUR: real[col.PDQ_COLOUR].take(pick)} if col.PDQ_COLOUR in real.column_names else {}
            write_parquet(pa.table({col.SAMPLE_ID: ids, col.PDQ_QUALITY: quality[pick].tolist(),
                                    col.PDQ_CODES: [row.tobytes() for row in rows], **colour}), path)
            passes = []
            for _ in range(2):
                wall, cpu = time.perf_counter(), time.process_time()
                pairs = pdq_pairs(pdq, search, [path], SampleIndex.of(pl.Series(ids)))
                passes.append((time.process_time() - cpu, time.perf_counter() - wall))
        cpu, wall = min(passes)
        out.append({"samples": n, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "pairs": pairs.height})
    out = out[1:]
    slope, intercept = np.polyfit(np.log([o["samples"] for o in out]), np.log([o["cpu_s"] for o in out]), 1)
    return {"method": "dedup.detectors.pdq_pairs, one process, IVF (exact_max=1), synthetic XOR-masked codes",
            "sizes": out, "exponent": round(float(slope), 3),
            "cpu_s_at_1M": round(float(math.exp(intercept) * 1e6 ** slope), 1),
            # IVF with sqrt(n) lists scans n / sqrt(n) codes per query: the largest size scaled by n^1.5
            "cpu_s_at_1M_n15": round(out[-1]["cpu_s"] * (1e6 / out[-1]["samples"]) ** 1.5, 1)}
