"""The global steps at scale on the local Ray: dedup -> decide -> export planning, from the score files on.

    PYTHONPATH=. python bench/scale.py --rows 1000000 [--reference] [--rows-per-file 100000] [--map-mib 128]

A generated run (support/scalegen.py: exact groups, caption signatures with planted near-duplicates,
pHash codes with planted neighbours, scores) is written by Ray tasks, then timed step by step:
the partitioned dedup (dedup.partitioned on Ray tasks), the decision per unit with the dedup's rules
(survivors read as dedup wrote them), the decision under a changed rule (survivors re-picked by tasks,
what a rerun with a new threshold does), the shard plan from per-unit counts and the manifest parts. A sampler thread reads the RSS of the driver and of every process under it (Ray
workers, raylet, GCS) every 0.2 s; the table shows the largest process per step. --reference also
runs the one-process dedup (support.dedup_reference.run_dedup) in a child process, for its time, peak RSS and
recall. Recall: the fraction of planted (copy, source) pairs whose two samples share a cluster.
Writes bench/results/scale-<rows>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dedup.config import DedupConfig  # noqa: E402
from manifests import schema as col  # noqa: E402
from manifests.layout import RunLayout  # noqa: E402
from support.scalegen import RATES, planted, write_part  # noqa: E402

MIB = 1 << 20


class RssSampler(threading.Thread):
    """Peak RSS per process (driver and its descendants), sampled; ``mark(step)`` starts a new step."""

    def __init__(self, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.period, self.step, self.peaks, self.stop_flag = period, "setup", {}, threading.Event()
        self.me = psutil.Process()

    def mark(self, step: str) -> None:
        self.step = step

    def run(self) -> None:
        while not self.stop_flag.is_set():
            for proc in [self.me, *self.me.children(recursive=True)]:
                try:
                    rss, name = proc.memory_info().rss, _role(proc)
                except psutil.Error:
                    continue
                step = self.peaks.setdefault(self.step, {})
                if rss > step.get(name, (0, 0))[0]:
                    step[name] = (rss, proc.pid)
            time.sleep(self.period)

    def largest(self, step: str) -> tuple[str, float]:
        """The largest process of ``step``; a step shorter than one period reports the driver now."""
        now = {"driver": (self.me.memory_info().rss, self.me.pid)}
        name, (rss, _) = max(self.peaks.get(step, now).items(), key=lambda kv: kv[1][0])
        return name, rss / MIB


def _role(proc: psutil.Process) -> str:
    if proc.pid == os.getpid():
        return "driver"
    cmd = " ".join(proc.cmdline()[:3])
    for key in ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env"):
        if key in cmd:
            return key
    return f"worker:{proc.pid}" if "default_worker" in cmd or "ray::" in proc.name() else f"other:{proc.name()}"


def config(args) -> DedupConfig:
    return DedupConfig.model_validate({
        "exact": {"enabled": True}, "minhash": {"enabled": True}, "phash": {"enabled": True},
        "search": {"nprobe": args.nprobe},
        "partitions": {"bytes_per_bucket": args.bucket_mib * MIB, "bytes_per_map_task": args.map_mib * MIB}})


def generate(layout: RunLayout, rows: int, per_file: int, tasks) -> int:
    bounds = list(range(0, rows, per_file)) + [rows]
    return sum(tasks(write_part, [(layout, k, a, b) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]))


def recall(duplicates: list[Path], rows: int) -> dict[str, float]:
    """Per planted kind: planted (copy, source) pairs whose samples share a cluster_id (the same survivor)."""
    clusters = pl.scan_parquet([str(p) for p in duplicates]).select(col.SAMPLE_ID, col.CLUSTER_ID)
    out = {}
    for kind in RATES:
        truth = pl.concat([planted(np.arange(lo, min(rows, lo + 1_000_000)), kind)
                           for lo in range(0, rows, 1_000_000)]).lazy()
        joined = (truth.join(clusters, left_on="sample_a", right_on=col.SAMPLE_ID, how="left")
                  .join(clusters, left_on="sample_b", right_on=col.SAMPLE_ID, how="left", suffix="_b")
                  .select((pl.col(col.CLUSTER_ID) == pl.col(f"{col.CLUSTER_ID}_b")).fill_null(False).mean())
                  .collect(engine="streaming"))
        out[kind] = round(float(joined.item()), 5)
    return out


def _reference(root: str, cfg_json: str, queue) -> None:
    from support.dedup_reference import run_dedup

    start = time.perf_counter()
    stats = run_dedup(DedupConfig.model_validate_json(cfg_json), RunLayout.at(root))
    queue.put({"wall_s": time.perf_counter() - start, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "pairs": {k: v["pairs"] for k, v in stats["pairs"].items()}, "duplicates": stats["duplicates"]})


def run_reference(layout: RunLayout, cfg: DedupConfig) -> dict:
    ctx = mp.get_context("spawn")  # fork would copy Polars' thread pool locks mid-use
    queue = ctx.Queue()
    child = ctx.Process(target=_reference, args=(str(layout.root), cfg.model_dump_json(), queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rows-per-file", type=int, default=100_000, help="rows per ingest unit / score file")
    parser.add_argument("--bucket-mib", type=int, default=128, help="dedup.partitions.bytes_per_bucket in MiB")
    parser.add_argument("--map-mib", type=int, default=128, help="dedup.partitions.bytes_per_map_task in MiB")
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--reference", action="store_true", help="also run the one-process dedup (child process)")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    import ray
    from dedup.partitioned import run_partitioned
    from manifests.export import shard_sizes
    from manifests.export_parts import write_manifest
    from manifests.shardplan import plan_sizes, spans_by_partition
    from pipelines.config import RunConfig
    from pipelines.run.decide_tasks import decide_partitioned, kept_counts, record_rules
    from pipelines.run.runtime import bind_to_loopback
    from pipelines.run.tasks import RayTasks

    bind_to_loopback()
    repo = str(Path(__file__).resolve().parent.parent)

    def start_ray() -> None:
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"PYTHONPATH": repo}})

    start_ray()
    root = Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir))
    layout, cfg = RunLayout.at(root), config(args)
    sampler = RssSampler()
    sampler.start()
    times: dict[str, float] = {}

    def step(name: str, fn):
        sampler.mark(name)
        start = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - start
        print(f"{name}: {times[name]:.1f} s, largest process {sampler.largest(name)[1]:.0f} MiB", flush=True)
        return out

    ray_tasks = RayTasks()
    step("generate", lambda: generate(layout, args.rows, args.rows_per_file, ray_tasks))
    ray.shutdown()  # fresh workers: the global steps' peaks must not include the generator's heap
    start_ray()
    run = RunConfig.model_validate({"input": {"path": "generated"}, "output_dir": str(root),
                                    "dedup": cfg.model_dump(mode="json")})
    stricter = run.model_copy(update={"filters": run.filters.model_validate(
        {"aesthetic": {"enabled": True, "min_score": 5.0}})})
    stats = step("dedup", lambda: run_partitioned(cfg, layout, None, tasks=ray_tasks))
    record_rules(run, layout)  # as the dedup phase does: decide with the same rules reads its survivors
    step("decide", lambda: decide_partitioned(run, layout, ray_tasks))
    repicked = step("decide_newrule", lambda: decide_partitioned(stricter, layout, ray_tasks))
    kept = kept_counts(layout)
    shards = step("export_plan", lambda: plan_sizes(kept, shard_sizes(sum(kept.values()), 10_000, 8)))
    step("manifest", lambda: write_manifest(layout, sorted(kept), spans_by_partition(shards), pl.Schema(), ray_tasks,
                                            False))
    sampler.mark("done")
    time.sleep(0.5)
    sampler.stop_flag.set()
    ray.shutdown()

    result = {"rows": args.rows, "rows_per_file": args.rows_per_file, "bucket_mib": args.bucket_mib, "map_mib": args.map_mib,
              "nprobe": args.nprobe, "cpus": args.cpus, "load_avg_1m": os.getloadavg()[0],
              "wall_s": {k: round(v, 2) for k, v in times.items()},
              "largest_process_mib": {k: {"process": sampler.largest(k)[0], "rss_mib": round(sampler.largest(k)[1], 1)}
                                      for k in times},
              "dedup": stats, "kept": sum(kept.values()), "shards": len(shards),
              "decide_newrule": {k: v for k, v in repicked.items() if not isinstance(v, dict)}}
    steps = [k for k in times if k != "generate"]
    result["peak_rss_mib_global_steps"] = max(result["largest_process_mib"][k]["rss_mib"] for k in steps)
    result["recall_partitioned"] = recall(layout.duplicates_files(), args.rows)
    if args.reference:
        result["reference"] = run_reference(layout, cfg)
        result["recall_reference"] = recall(layout.duplicates_files(), args.rows)
    print(f"\n{'step':<12}{'wall s':>10}{'largest MiB':>14}  process")
    for k in times:
        info = result["largest_process_mib"][k]
        print(f"{k:<12}{times[k]:>10.1f}{info['rss_mib']:>14.0f}  {info['process']}")
    if args.reference:
        ref = result["reference"]
        print(f"{'one-process':<12}{ref['wall_s']:>10.1f}{ref['peak_rss_mib']:>14.0f}  child process (dedup only)")
    print("shuffle part files left at the end of dedup:", sum(stats.get("shuffled_files", {}).values()))
    print("shuffle part files written by dedup (all steps):", sum(stats.get("shuffle_files_written", {}).values()))
    print("recall partitioned:", result["recall_partitioned"])
    if args.reference:
        print("recall one-process:", result["recall_reference"])
    out = Path(__file__).resolve().parent / "results" / f"scale-{args.rows}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print("wrote", out)
    import shutil
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
