"""Benchmark ``thresher review`` on a generated manifest (default 10M rows): what a user waits for.

    PYTHONPATH=. python bench/review.py [--rows 10000000] [--rows-per-part 10000] [--out /tmp/review-bench] [--pairs]

The run is a decided synthetic manifest (``support.manifest_synthetic``: statuses, captions, CLIP / aesthetic /
NSFW scores, duplicate columns) written as one part per 10k-row unit, like a run's ``manifest/``, with
staged tars of real photos (scikit-image's) that the rows point into. The app is started in this
process and driven over HTTP on loopback as the page drives it: start-up, a threshold change per slider
(its first time: nothing cached), a page of 60 thumbnails (the cards, then the 60 JPEGs fetched six at a
time as a browser does, none cached) for three searches, the flips grid. Peak RSS is this process's
(the app and the client).

Without ``--pairs`` the manifest has no stored dedup pairs, so no change re-picks survivors. With
``--pairs`` the run stores the pairs the scale generator plants (``support.scalegen.planted``: sha256,
pixel-hash, caption-MinHash and pHash copies of earlier rows, each with the similarity its detector would
measure from the generated signatures and codes) as part files under ``dedup/pairs/``, as the dedup phase
stores them, and its manifest is decided with the survivors ``dedup.survivors.duplicates`` picks from them. Every
changed rule then re-picks survivors (in memory: ``pipelines.tools.review.survivors``), and the moves go on
with dedup thresholds. Prints a table and writes bench/results/review-<rows>[-pairs].json (``--figure``
also bench/figures/review[-pairs].json).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import resource
import sys
import tarfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402
import psutil  # noqa: E402

from bench.machine import figure_record, write_figure  # noqa: E402
from filters.decide import decide  # noqa: E402
from manifests import schema as col  # noqa: E402
from manifests.layout import RunLayout  # noqa: E402
from pipelines.config import build_config, dump_config  # noqa: E402
from support.manifest_synthetic import chunk  # noqa: E402

RESULTS = REPO / "bench" / "results"
TARS, PER_TAR = 20, 1000
PAIR_PARTS = 16  # stored pairs part files
FILTERS = {"clip": {"enabled": True, "min_score": 0.22}, "aesthetic": {"enabled": True, "min_score": 4.0},
           "nsfw": {"enabled": True, "max_prob": 0.5}}
MOVES = [("filters.nsfw.max_prob", 0.3), ("filters.clip.min_score", 0.25), ("filters.aesthetic.min_score", 4.5),
         ("filters.rules.min_image_side", 300), ("filters.rules.max_aspect_ratio", 2.0),
         ("filters.rules.min_caption_words", 3),
         ("filters.nsfw.max_prob", 0.5)]
PAIR_DEDUP = {"exact": {"enabled": True}, "minhash": {"enabled": True, "store_threshold": 0.7},
              "phash": {"enabled": True, "store_threshold": 0.8}}
PAIR_MOVES = [("dedup.minhash.threshold", 0.95), ("filters.clip.min_score", 0.22), ("dedup.phash.threshold", 0.97),
              ("filters.aesthetic.min_score", 4.0), ("dedup.minhash.threshold", 0.8)]
SEARCHES = {"page 1, no filter": {}, "reason nsfw, page 100": {"reason": "nsfw", "page": 100},
            "caption 'dog', kept, page 50": {"caption": "dog", "kept": True, "page": 50}}


def _tars(layout: RunLayout) -> None:
    from PIL import Image
    from skimage import data

    photos = [Image.fromarray(getattr(data, n)()).convert("RGB") for n in ("astronaut", "coffee", "chelsea", "rocket")]
    layout.staged_dir.mkdir(parents=True, exist_ok=True)
    for t in range(TARS):
        with tarfile.open(layout.staged_tar(t), "w") as tar:
            for m in range(PER_TAR):
                photo = photos[(t + m) % len(photos)]
                buf = io.BytesIO()
                photo.crop((m % 97, m % 53, photo.width - m % 41, photo.height - m % 37)).resize((320, 240)).save(
                    buf, "JPEG", quality=85)
                info = tarfile.TarInfo(f"{m:05d}.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)


def generate(root: Path, rows: int, per_part: int, pairs: bool = False) -> None:
    """The run, one manifest part at a time (bounded memory); with ``pairs``, planted pairs stored and the
    parts decided with the survivors picked from them (memory ~ the pairs)."""
    config = build_config({"output_dir": str(root), "input": {"path": str(root / "unused.parquet")},
                           "filters": FILTERS, **({"dedup": PAIR_DEDUP} if pairs else {})})
    layout = RunLayout.at(root)
    layout.manifest_dir.mkdir(parents=True, exist_ok=True)
    if len(layout.staged_tars()) < TARS:
        _tars(layout)
    for unit, start in enumerate(range(0, rows, per_part)):
        n = min(per_part, rows - start)
        frame = chunk(start, n, seed=0).with_columns(
            pl.lit(f"ingest/staged/{unit % TARS:05d}.tar").alias(col.SHARD),
            (pl.int_range(start, start + n) % PER_TAR).cast(pl.String).str.zfill(5).add(".jpg").alias(col.MEMBER))
        if pairs:  # undecided for now: the survivors need every part's eligibility
            frame = frame.drop(col.DUPLICATE_OF, col.DUP_KIND, col.DUP_SIMILARITY)
            frame.write_parquet(layout.manifest_part(f"{unit:05d}"))
        else:
            decide(frame, config.filters).collect().write_parquet(layout.manifest_part(f"{unit:05d}"))
    if pairs:
        decide_with_pairs(layout, config, rows, per_part)
    (root / "config.yaml").write_text(dump_config(config))
    (root / "rows.json").write_text(json.dumps(rows))


def planted_pairs(rows: int, step: int = 200_000) -> pl.DataFrame:
    """The pairs the scale generator plants among rows 0..rows-1, named as ``chunk`` names rows, each with
    the similarity its detector measures: 1 for the exact ones, the share of equal MinHash values, and
    1 - Hamming/64 of the pHash codes."""
    import numpy as np

    from dedup.cluster import PAIRS_SCHEMA, with_kind
    from support.scalegen import _codes, _signatures, planted

    found = []
    for start in range(0, rows, step):
        index = np.arange(start, min(rows, start + step), dtype=np.int64)
        for kind in ("sha256", "pixel_hash", "minhash", "phash"):
            got = planted(index, kind).select(pl.all().cast(pl.Int64))
            a, b = got["sample_a"].to_numpy(), got["sample_b"].to_numpy()
            if kind == "minhash":
                similarity = (_signatures(a) == _signatures(b)).mean(axis=1)
            elif kind == "phash":
                similarity = 1 - np.bitwise_count(_codes(a)[0] ^ _codes(b)[0]) / 64
            else:
                similarity = np.ones(len(a))
            found.append(pl.DataFrame({"sample_a": a, "sample_b": b, "detector": kind, "similarity": similarity}))
    named = pl.concat(found).with_columns(pl.col("sample_a", "sample_b").cast(pl.String).str.zfill(9),
                                          pl.col("similarity").cast(pl.Float32))
    return with_kind(named).select(list(PAIRS_SCHEMA))


def decide_with_pairs(layout: RunLayout, config, rows: int, per_part: int) -> None:
    """Store the planted pairs as the dedup phase does (part files under ``dedup/pairs/``, by a hash of sample_a),
    pick their survivors under the run's rules (``dedup.survivors.duplicates``: the same ``cluster()`` as the
    decide phase) and decide each part with them."""
    from functools import partial

    from dedup import survivors
    from filters.decide import passes_rules

    pairs = planted_pairs(rows)
    layout.pairs_dir.mkdir(parents=True, exist_ok=True)
    bucket = pl.col("sample_a").hash(seed=0) % PAIR_PARTS
    for (k,), part in pairs.with_columns(bucket.alias("_bucket")).partition_by("_bucket", as_dict=True).items():
        part.drop("_bucket").write_parquet(layout.pairs_dir / f"{k:05d}.parquet")
    parts = layout.manifest_files()
    table = survivors.duplicates(pl.scan_parquet([str(p) for p in parts]), pairs, config.dedup,
                                 partial(passes_rules, config=config.filters))
    by_unit = table.with_columns((pl.col(col.SAMPLE_ID).cast(pl.Int64) // per_part).alias("_unit")).partition_by(
        "_unit", as_dict=True, include_key=False)
    for part in parts:
        mine = by_unit.get((int(RunLayout.unit_of(part)),), table.clear())
        frame = survivors.join_duplicates(pl.read_parquet(part).lazy(), mine)
        decide(frame, config.filters).collect().write_parquet(part)
    print(f"stored {pairs.height:,} planted pairs; {table.height:,} rows clustered, "
          f"{table[col.DUPLICATE_OF].is_not_null().sum():,} duplicates", flush=True)


def post(base: str, token: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "X-Thresher-Token": token})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def thumbs(base: str, token: str, rows: list[int]) -> int:
    def one(row: int) -> int:
        request = urllib.request.Request(f"{base}/api/thumb/{row}", headers={"X-Thresher-Token": token})
        with urllib.request.urlopen(request, timeout=600) as response:
            return len(response.read())

    with ThreadPoolExecutor(6) as pool:  # a browser's connections per host
        return sum(pool.map(one, rows))


class Peak(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.done = 0, threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.done.is_set():
            self.peak = max(self.peak, me.memory_info().rss)
            time.sleep(0.05)


def timed(results: list, step: str, fn) -> object:
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    results.append({"step": step, "seconds": round(seconds, 3)})
    print(f"  {step:<52}{seconds:>8.2f} s", flush=True)
    return value


def measure(root: Path, pairs: bool = False) -> list[dict]:
    from pipelines.tools.review.app import start
    from pipelines.tools.review.service import Review

    results: list[dict] = []
    review = timed(results, "start-up (masks of the run's decision, histograms)", lambda: Review(root, "bench"))
    served = start(review)
    base, token = served.base, served.token
    timed(results, "counts, the run's own thresholds", lambda: post(base, token, "/api/counts", {"setting": {}}))
    setting: dict = {}
    for key, value in MOVES + (PAIR_MOVES if pairs else []):
        setting = {**setting, key: value}
        report = timed(results, f"counts after {key}={value}",
                       lambda: post(base, token, "/api/counts", {"setting": setting}))
        results[-1]["kept"] = report["report"]["kept_after"]
    for name, query in SEARCHES.items():
        cards = timed(results, f"60 cards: {name}",
                      lambda: post(base, token, "/api/browse", {"query": query, "setting": setting}))["cards"]
        timed(results, f"  + their {len(cards)} thumbnails (cold)", lambda: thumbs(base, token, [c["row"] for c in cards]))
        page = round(results[-2]["seconds"] + results[-1]["seconds"], 3)
        results.append({"step": f"page of 60: {name}", "seconds": page})
        print(f"  {'  = the page, cards and thumbnails':<52}{page:>8.2f} s", flush=True)
    flips = timed(results, "flips grid (24 + 24 cards)", lambda: [post(base, token, "/api/flips", {
        "setting": setting, "which": w}) for w in ("newly_rejected", "newly_kept")])
    timed(results, "  + their thumbnails (cold)",
          lambda: thumbs(base, token, [c["row"] for f in flips for c in f["cards"]]))
    timed(results, "nearest the clip threshold (12 + 12 cards)", lambda: post(base, token, "/api/nearest", {
        "setting": setting, "key": "filters.clip.min_score"}))
    served.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rows-per-part", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/thresher-review-bench"))
    parser.add_argument("--pairs", action="store_true", help="a run with stored dedup pairs (survivors re-picked)")
    parser.add_argument("--figure", action="store_true", help="also write bench/figures/review[-pairs].json")
    args = parser.parse_args()
    suffix = "-pairs" if args.pairs else ""
    root = args.out / f"run-{args.rows}{suffix}"
    if not (root / "rows.json").exists():
        start = time.perf_counter()
        child = mp.get_context("spawn").Process(target=generate, args=(root, args.rows, args.rows_per_part, args.pairs))
        child.start()
        child.join()
        print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.0f} s")
    print(f"thresher review on {args.rows:,} rows ({root}):")
    peak, load = Peak(), os.getloadavg()[0]
    peak.start()
    results = measure(root, args.pairs)
    peak.done.set()
    rss = max(peak.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    print(f"  {'peak RSS of the app (and this client)':<52}{rss:>8.0f} MiB")
    command = f"PYTHONPATH=. python bench/review.py --rows {args.rows}{' --pairs' if args.pairs else ''}"
    record = {**figure_record(command, [load, os.getloadavg()[0]]), "rows": args.rows,
              "rows_per_part": args.rows_per_part, "peak_rss_mib": round(rss), "steps": results}
    if args.pairs:
        stored = pl.scan_parquet(RunLayout.at(root).pairs_files())
        record["stored_pairs"] = stored.select(pl.len()).collect().item()
        record["paired_rows"] = pl.concat([stored.select(pl.col("sample_a").alias("s")),
                                           stored.select(pl.col("sample_b").alias("s"))]).unique().select(
            pl.len()).collect().item()
        print(f"  stored pairs {record['stored_pairs']:,} over {record['paired_rows']:,} rows")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"review-{args.rows}{suffix}.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    if args.figure:
        print("written", write_figure(f"review{suffix}", record))


if __name__ == "__main__":
    main()
