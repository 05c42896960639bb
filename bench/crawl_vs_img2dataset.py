"""Thresher's crawl vs img2dataset on the same loopback-served photos, same output and process count.

    python bench/crawl_vs_img2dataset.py                      # 3000 photos, 2 processes, 3 rounds
    python bench/crawl_vs_img2dataset.py --rounds 3 --figure  # also writes bench/figures/crawl_vs_img2dataset.json
    python bench/crawl_vs_img2dataset.py --flat-memory 10000000 --flat-crawl 200000

Photos are the bundled real photos of ``pipelines.cli.corpus`` rescaled to 0.3-4 MP (plus mirrored copies),
served from a separate aiohttp process on 127.0.0.1. Three rows, each a process started by the bench:

- ``img2dataset``: its CLI as it is, from its own venv (``.venv-img2dataset``, created with
  ``pip install img2dataset`` when missing), ``--distributor multiprocessing``;
- ``thresher CLI``: ``python -m pipelines ingest CONFIG`` (what ``thresher ingest`` runs): a local Ray
  started by the CLI with ``ray.num_cpus`` = processes and ``resources.ingest.concurrency`` = processes,
  work units as Ray Data actor calls. This is the row to compare the tools by (CLI to CLI);
- ``thresher functions``: Thresher's ingest functions (``plan_units`` + ``ingest_unit``) in a
  ``ProcessPoolExecutor`` of the same size -- not the CLI: no Ray, no phase bookkeeping. It bounds
  what the CLI's orchestration costs.

All write 256 px ``border`` JPEGs at quality 95 with sha256 hashes, ``processes`` workers of ``concurrency``
requests in flight each. Rounds run the rows back to back (A B C A B C ...), so background load hits all
alike; images/s is successes over wall time, start-up included. Peak RSS is the sum over each tool's
process tree (Ray's raylet and workers included), sampled every 0.1 s. The flat-memory mode plans a huge
synthetic URL list against a fast 404 route and crawls a prefix of it, sampling RSS, to show memory does
not grow with the list. Results go to bench/results/crawl_vs_img2dataset.json.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.machine import figure_record, write_figure  # noqa: E402

I2D_VENV = REPO / ".venv-img2dataset"
RESULTS = REPO / "bench" / "results"
TOOLS = ("img2dataset", "thresher_cli", "thresher_functions")
LABELS = {"img2dataset": "img2dataset CLI", "thresher_cli": "thresher ingest CLI (Ray)",
          "thresher_functions": "thresher functions, process pool (not the CLI)"}
MEGAPIXELS = (0.3, 0.6, 1.0, 2.0, 4.0)


def build_photos(out_dir: Path) -> list[str]:
    """Each bundled photo at each size in MEGAPIXELS, and mirrored: ~170 distinct JPEGs of 0.3-4 MP."""
    from PIL import Image, ImageOps

    from pipelines.cli.corpus import load_photos

    names = []
    for name, (img, _) in sorted(load_photos().items()):
        for mp_ in MEGAPIXELS:
            scale = (mp_ * 1e6 / (img.width * img.height)) ** 0.5
            sized = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
            for flip, variant in (("", sized), ("-m", ImageOps.mirror(sized))):
                file = f"{name}-{mp_}mp{flip}.jpg"
                variant.save(out_dir / file, format="JPEG", quality=90)
                names.append(file)
    return names


def serve(root: str, port_queue: mp.Queue) -> None:
    """The photo server process: every file in ``root`` in memory under /img/, anything under /404/ a 404."""
    from aiohttp import web

    files = {p.name: p.read_bytes() for p in Path(root).iterdir()}

    async def image(request: web.Request) -> web.Response:
        body = files.get(request.match_info["name"])
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="image/jpeg")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def start() -> None:
        app = web.Application()
        app.add_routes([web.get("/img/{name}", image), web.get("/404/{rest:.*}", missing)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port_queue.put(site._server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    import asyncio
    asyncio.run(start())


def write_url_list(path: Path, base: str, names: list[str], n: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    urls = [f"{base}/img/{names[i % len(names)]}?copy={i}" for i in range(n)]
    pq.write_table(pa.table({"url": urls, "caption": [f"photo {i}" for i in range(n)]}), path)


def write_404_list(path: Path, base: str, n: int, batch: int = 1_000_000) -> None:
    """``n`` URLs to the 404 route, written a batch at a time so the list itself never sits in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("url", pa.string()), ("caption", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            urls = [f"{base}/404/{i}.jpg" for i in range(start, stop)]
            writer.write_table(pa.table({"url": urls, "caption": [None] * len(urls)}, schema=schema))


def measured(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd``; wall time and the peak of the summed RSS of its process tree."""
    import psutil

    start, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    root, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{err[-4000:]}")
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"wall_s": time.perf_counter() - start, "cpu_s": cpu_s, "peak_rss_mib": peak / 2**20, "stdout": out}


def ensure_img2dataset() -> Path:
    exe = I2D_VENV / "bin" / "img2dataset"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True)
        subprocess.run([str(I2D_VENV / "bin" / "pip"), "install", "-q", "img2dataset"], check=True)
    return exe


def run_img2dataset(urls: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = [str(ensure_img2dataset()), "--url_list", str(urls), "--input_format", "parquet",
           "--url_col", "url", "--caption_col", "caption", "--output_folder", str(out),
           "--output_format", "webdataset", "--processes_count", str(args.processes),
           "--thread_count", str(args.concurrency), "--image_size", "256", "--resize_mode", "border",
           "--encode_quality", "95", "--number_sample_per_shard", str(args.rows_per_shard),
           "--distributor", "multiprocessing", "--timeout", "10", "--retries", "0", "--enable_wandb", "False"]
    result = measured(cmd)
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    result["successes"] = sum(s["successes"] for s in stats)
    result["rows"] = sum(s["count"] for s in stats)
    result["window_s"] = max(s["end_time"] for s in stats) - min(s["start_time"] for s in stats)
    return result


def crawl_settings(args: argparse.Namespace) -> dict:
    """Both Thresher rows' crawl config: img2dataset's output settings, no retries, loopback allowed."""
    return {"allow_private_addresses": True, "retries": 0, "image_size": 256, "resize_mode": "border",
            "encode_quality": 95, "concurrency": args.concurrency, "per_host_concurrency": args.concurrency,
            "decode_threads": args.decode_threads}


def run_thresher_functions(urls: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", str(urls), str(out), "--processes", str(args.processes),
           "--concurrency", str(args.concurrency), "--rows-per-shard", str(args.rows_per_shard),
           "--decode-threads", str(args.decode_threads)]
    result = measured(cmd, env={**os.environ, "PYTHONPATH": str(REPO)})
    summary = json.loads(result.pop("stdout").strip().splitlines()[-1])
    return {**result, **summary}


def run_thresher_cli(urls: Path, out: Path, args: argparse.Namespace) -> dict:
    """``thresher ingest CONFIG`` on a local Ray of ``processes`` CPUs, as a user runs it."""
    import polars as pl
    import yaml

    config = {"output_dir": str(out), "input": {"path": str(urls), "rows_per_shard": args.rows_per_shard},
              "crawl": crawl_settings(args), "ray": {"num_cpus": args.processes},
              "resources": {"ingest": {"num_cpus": 1, "concurrency": args.processes}}}
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(config))
    result = measured([sys.executable, "-m", "pipelines", "ingest", str(path)],
                      env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    result.pop("stdout")
    status = pl.read_parquet(sorted((out / "ingest" / "staged").glob("*.parquet")), columns=["status"])["status"]
    counts = status.value_counts()
    return {**result, "successes": int((status == "success").sum()), "rows": len(status),
            "status": dict(zip(counts["status"], counts["count"].cast(int)))}


def thresher_worker(urls: str, out: str, args: argparse.Namespace) -> None:
    """Plan the URL list into units and ingest them with a pool of ``processes`` worker processes."""
    from crawl.config import CrawlConfig, InputConfig
    from crawl.ingest import ingest_unit
    from crawl.sources import plan_units
    from manifests.layout import RunLayout

    start = time.time()
    layout = RunLayout.at(out)
    units = plan_units(InputConfig(path=urls, rows_per_shard=args.rows_per_shard), layout.units_dir)
    crawl = CrawlConfig(**crawl_settings(args))
    status: Counter[str] = Counter()
    with ProcessPoolExecutor(args.processes, mp_context=mp.get_context("fork")) as pool:
        for summary in pool.map(ingest_unit, units, [crawl] * len(units), [layout] * len(units)):
            status.update(summary["status"])
    print(json.dumps({"successes": status.get("success", 0), "rows": sum(status.values()),
                      "status": dict(status), "window_s": time.time() - start}))


RUNNERS = {"img2dataset": run_img2dataset, "thresher_cli": run_thresher_cli,
           "thresher_functions": run_thresher_functions}


def summary(results: list[dict]) -> dict:
    """One row's rounds: wall min/median, images/s at each, CPU per image and peak RSS of the fastest."""
    walls = sorted(r["wall_s"] for r in results)
    best, median = min(results, key=lambda r: r["wall_s"]), statistics.median(walls)
    return {"successes": best["successes"], "rows": best["rows"], "wall_s": [round(r["wall_s"], 2) for r in results],
            "min_wall_s": round(walls[0], 2), "median_wall_s": round(median, 2),
            "images_per_s_best": round(best["successes"] / walls[0], 1),
            "images_per_s_median": round(best["successes"] / median, 1),
            # CPU: the reaped children only; Ray's workers are not the CLI's children, so not counted
            "cpu_ms_per_image": round(1000 * best["cpu_s"] / max(1, best["successes"]), 2),
            "peak_rss_mib": round(best["peak_rss_mib"]), "status": best.get("status")}


def ratios(runs: dict[str, list[dict]], tool: str) -> dict:
    """``tool`` over img2dataset in images/s: per round (the two ran back to back), its median, best/best."""
    per_round = [t["successes"] / t["wall_s"] / (i["successes"] / i["wall_s"])
                 for i, t in zip(runs["img2dataset"], runs[tool])]
    best = {k: min(runs[k], key=lambda r: r["wall_s"]) for k in ("img2dataset", tool)}
    return {"per_round": [round(r, 3) for r in per_round], "median_of_rounds": round(statistics.median(per_round), 3),
            "best_over_best": round(best[tool]["successes"] / best[tool]["wall_s"]
                                    / (best["img2dataset"]["successes"] / best["img2dataset"]["wall_s"]), 3)}


def compare(args: argparse.Namespace, work: Path, base: str, names: list[str]) -> dict:
    urls = work / "urls.parquet"
    write_url_list(urls, base, names, args.images)
    tools = [t for t in TOOLS if t in args.tools]
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    loads = [os.getloadavg()[0]]
    for round_ in range(args.rounds):  # interleaved, so background load hits every row alike
        for tool in tools:
            runs[tool].append(RUNNERS[tool](urls, work / f"{tool}-{round_}", args))
            shutil.rmtree(work / f"{tool}-{round_}", ignore_errors=True)
            loads.append(os.getloadavg()[0])
            print(f"round {round_} {tool}: {runs[tool][-1]['wall_s']:.1f} s, {runs[tool][-1]['successes']} ok,"
                  f" load {loads[-1]:.2f}", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)  # each finished round, in case a later one is cut short
        (RESULTS / "crawl_vs_img2dataset.partial.json").write_text(json.dumps(runs, indent=1, default=str))
    report = {"images": args.images, "distinct_files": len(names), "processes": args.processes,
              "concurrency": args.concurrency, "rounds": args.rounds, "order": tools, "load_avg_1m": loads,
              "rows": {t: summary(runs[t]) for t in tools}}
    if "img2dataset" in runs:
        report["ratio_vs_img2dataset"] = {t: ratios(runs, t) for t in tools if t != "img2dataset"}
    return report


def flat_memory(args: argparse.Namespace, work: Path, base: str) -> dict:
    """Plan a huge 404 list (RSS sampled), then crawl a prefix of its units (RSS sampled)."""
    urls = work / "urls-404.parquet"
    t = time.perf_counter()
    write_404_list(urls, base, args.flat_memory)
    written_s = time.perf_counter() - t
    crawl_units = max(1, args.flat_crawl // args.flat_rows_per_shard)
    cmd = [sys.executable, __file__, "--worker-404", str(urls), str(work / "flat"), "--processes",
           str(args.processes), "--rows-per-shard", str(args.flat_rows_per_shard), "--crawl-units", str(crawl_units)]
    result = measured(cmd, env={**os.environ, "PYTHONPATH": str(REPO)})
    summary = json.loads(result.pop("stdout").strip().splitlines()[-1])
    return {"rows_listed": args.flat_memory, "list_mib": urls.stat().st_size / 2**20, "write_s": written_s,
            **result, **summary}


def worker_404(urls: str, out: str, args: argparse.Namespace) -> None:
    import psutil

    from crawl.config import CrawlConfig, InputConfig
    from crawl.ingest import ingest_unit
    from crawl.sources import plan_units
    from manifests.layout import RunLayout

    me = psutil.Process()
    rss0 = me.memory_info().rss
    t = time.perf_counter()
    layout = RunLayout.at(out)
    units = plan_units(InputConfig(path=urls, rows_per_shard=args.rows_per_shard), layout.units_dir)
    plan_s, rss_planned = time.perf_counter() - t, me.memory_info().rss
    crawl = CrawlConfig(allow_private_addresses=True, retries=0, concurrency=args.concurrency,
                        per_host_concurrency=args.concurrency)
    todo, rss_by_unit, status = units[: args.crawl_units], [], Counter()
    t = time.perf_counter()
    with ProcessPoolExecutor(args.processes, mp_context=mp.get_context("fork")) as pool:
        for summary in pool.map(ingest_unit, todo, [crawl] * len(todo), [layout] * len(todo)):
            status.update(summary["status"])
            tree = [me, *me.children(recursive=True)]
            rss_by_unit.append(round(sum(p.memory_info().rss for p in tree) / 2**20, 1))
    crawl_s = time.perf_counter() - t
    print(json.dumps({"units": len(units), "plan_s": plan_s, "driver_rss_before_mib": rss0 / 2**20,
                      "driver_rss_after_plan_mib": rss_planned / 2**20, "rows_crawled": sum(status.values()),
                      "crawl_s": crawl_s, "requests_per_s": sum(status.values()) / crawl_s, "status": dict(status),
                      "tree_rss_by_unit_mib": rss_by_unit}))


def table(result: dict) -> str:
    rows = [f"{'row':<48}{'img/s best':>11}{'img/s med':>10}{'ok':>6}{'wall min':>9}{'wall med':>9}"
            f"{'CPU ms/img':>11}{'RSS MiB':>9}"]
    for tool, r in result["rows"].items():
        rows.append(f"{LABELS[tool]:<48}{r['images_per_s_best']:>11.1f}{r['images_per_s_median']:>10.1f}"
                    f"{r['successes']:>6}{r['min_wall_s']:>9.1f}{r['median_wall_s']:>9.1f}"
                    f"{r['cpu_ms_per_image']:>11.1f}{r['peak_rss_mib']:>9}")
    for tool, ratio in result.get("ratio_vs_img2dataset", {}).items():
        rows.append(f"{LABELS[tool]} / img2dataset: {ratio['median_of_rounds']:.2f}x (median of rounds; per round "
                    + ", ".join(f"{r:.2f}x" for r in ratio["per_round"]) + f"; best/best {ratio['best_over_best']:.2f}x)")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight per process, both tools")
    parser.add_argument("--decode-threads", type=int, default=1, help="Thresher decode threads per process")
    parser.add_argument("--rows-per-shard", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flat-memory", type=int, default=0, help="rows in the synthetic 404 list (0: skip)")
    parser.add_argument("--flat-crawl", type=int, default=200_000, help="rows of the 404 list actually crawled")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS), help="rows to run")
    parser.add_argument("--figure", action="store_true", help="also write bench/figures/crawl_vs_img2dataset.json")
    parser.add_argument("--flat-rows-per-shard", type=int, default=10_000)
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--worker-404", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--crawl-units", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return thresher_worker(*args.worker, args)
    if args.worker_404:
        return worker_404(*args.worker_404, args)
    report = {}
    with tempfile.TemporaryDirectory(prefix="thresher-bench-") as tmp:
        work, photos = Path(tmp), Path(tmp) / "photos"
        photos.mkdir()
        names = build_photos(photos)
        ports: mp.Queue = mp.Queue()
        server = mp.get_context("fork").Process(target=serve, args=(str(photos), ports), daemon=True)
        server.start()
        base = f"http://127.0.0.1:{ports.get(timeout=60)}"
        try:
            if not args.skip_compare:
                report["compare"] = compare(args, work, base, names)
                print(table(report["compare"]))
            if args.flat_memory:
                report["flat_memory"] = flat_memory(args, work, base)
                print(json.dumps(report["flat_memory"], indent=1))
        finally:
            server.terminate()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "crawl_vs_img2dataset.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"saved {out}")
    if args.figure and "compare" in report:
        record = figure_record(" ".join(["python", "bench/crawl_vs_img2dataset.py", *sys.argv[1:]]),
                               report["compare"]["load_avg_1m"])
        print("written", write_figure("crawl_vs_img2dataset", {**record, **report["compare"]}))


if __name__ == "__main__":
    main()
