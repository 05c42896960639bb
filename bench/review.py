"""Benchmark ``thresher review`` on a generated manifest (default 10M rows): what a user waits for.

    PYTHONPATH=. python bench/review.py [--rows 10000000] [--rows-per-part 10000] [--out /tmp/review-bench]

The run is a decided synthetic manifest (``support.manifest_synthetic``: statuses, captions, CLIP / aesthetic /
NSFW scores, duplicate columns) written as one part per 10k-row unit, like a run's ``manifest/``, with
staged tars of real photos (scikit-image's) that the rows point into. The app is started in this
process and driven over HTTP on loopback as the page drives it: start-up, a threshold change per slider
(its first time: nothing cached), a page of 60 thumbnails (the cards, then the 60 JPEGs fetched six at a
time as a browser does, none cached) for three searches, the flips grid. Peak RSS is this process's
(the app and the client). The manifest has no stored dedup pairs, so no change re-picks survivors: with
pairs, a changed rule costs what ``thresher tune`` costs to re-pick (bench/scale.py's decide step).
Prints a table and writes bench/results/review-<rows>.json (``--figure`` also bench/figures/review.json).
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
from support.manifest_synthetic import chunk  # noqa: E402
from pipelines.config import build_config, dump_config  # noqa: E402

RESULTS = REPO / "bench" / "results"
TARS, PER_TAR = 20, 1000
FILTERS = {"clip": {"enabled": True, "min_score": 0.22}, "aesthetic": {"enabled": True, "min_score": 4.0},
           "nsfw": {"enabled": True, "max_prob": 0.5}}
MOVES = [("filters.nsfw.max_prob", 0.3), ("filters.clip.min_score", 0.25), ("filters.aesthetic.min_score", 4.5),
         ("filters.rules.min_image_side", 300), ("filters.rules.max_aspect_ratio", 2.0),
         ("filters.rules.min_caption_words", 3),
         ("filters.nsfw.max_prob", 0.5)]
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


def generate(root: Path, rows: int, per_part: int) -> None:
    """The run, one manifest part at a time (bounded memory)."""
    config = build_config({"output_dir": str(root), "input": {"path": str(root / "unused.parquet")},
                           "filters": FILTERS})
    layout = RunLayout.at(root)
    layout.manifest_dir.mkdir(parents=True, exist_ok=True)
    if len(layout.staged_tars()) < TARS:
        _tars(layout)
    for unit, start in enumerate(range(0, rows, per_part)):
        n = min(per_part, rows - start)
        frame = chunk(start, n, seed=0).with_columns(
            pl.lit(f"ingest/staged/{unit % TARS:05d}.tar").alias(col.SHARD),
            (pl.int_range(start, start + n) % PER_TAR).cast(pl.String).str.zfill(5).add(".jpg").alias(col.MEMBER))
        decide(frame, config.filters).collect().write_parquet(layout.manifest_part(f"{unit:05d}"))
    (root / "config.yaml").write_text(dump_config(config))
    (root / "rows.json").write_text(json.dumps(rows))


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


def measure(root: Path) -> list[dict]:
    from pipelines.review.app import start
    from pipelines.review.service import Review

    results: list[dict] = []
    review = timed(results, "start-up (masks of the run's decision, histograms)", lambda: Review(root, "bench"))
    served = start(review)
    base, token = served.base, served.token
    timed(results, "counts, the run's own thresholds", lambda: post(base, token, "/api/counts", {"setting": {}}))
    setting: dict = {}
    for key, value in MOVES:
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
    parser.add_argument("--figure", action="store_true", help="also write bench/figures/review.json")
    args = parser.parse_args()
    root = args.out / f"run-{args.rows}"
    if not (root / "rows.json").exists():
        start = time.perf_counter()
        child = mp.get_context("spawn").Process(target=generate, args=(root, args.rows, args.rows_per_part))
        child.start()
        child.join()
        print(f"generated {args.rows:,} rows in {time.perf_counter() - start:.0f} s")
    print(f"thresher review on {args.rows:,} rows ({root}):")
    peak, load = Peak(), os.getloadavg()[0]
    peak.start()
    results = measure(root)
    peak.done.set()
    rss = max(peak.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    print(f"  {'peak RSS of the app (and this client)':<52}{rss:>8.0f} MiB")
    record = {**figure_record(f"PYTHONPATH=. python bench/review.py --rows {args.rows}", [load, os.getloadavg()[0]]),
              "rows": args.rows, "rows_per_part": args.rows_per_part, "peak_rss_mib": round(rss), "steps": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"review-{args.rows}.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    if args.figure:
        print("written", write_figure("review", record))


if __name__ == "__main__":
    main()
