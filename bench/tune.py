"""Benchmark ``thresher tune`` (and ``thresher query``) on a generated run with stored duplicate pairs.

    PYTHONPATH=. python bench/tune.py [--rows 1000000] [--rows-per-file 100000] [--repeat 3]

The run is the one ``bench/scale.py`` builds, written in this process without Ray: ``support.scalegen``
rows and scores, the partitioned dedup with sha256, pixel-hash and caption-MinHash pairs stored under
``dedup/pairs/`` (pHash off: its IVF search is the slow step of the build on 2 cores, and tune treats
its pairs like any other), the decision and the manifest parts, and its ``config.yaml`` (aesthetic
rule at 3.0). Then each case runs as its own process (the real CLI), the cases
interleaved round by round (A B C A B C ...), so background load hits all alike:

- ``tune: same rules``: the run's own rules, so survivors stand as the dedup picked them;
- ``tune: new rules, pairs hidden``: a changed aesthetic threshold on a copy of the run without its
  stored pairs (what the old benchmark timed: counting reasons only, survivors not re-picked);
- ``tune: new rules, survivors re-picked``: the same change on the real run: eligibility per part,
  then components and groups over the stored pairs, before counting.

Before timing, each case's survivor path is asked of ``pipelines.run.repick.for_manifest`` (the function
tune calls) and asserted, and the re-picked survivors are counted against the manifest's.
Prints a table and writes bench/results/tune-ROWS.json (``--figure`` also writes bench/figures/tune.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from bench.machine import figure_record, write_figure  # noqa: E402
from dedup.config import DedupConfig  # noqa: E402
from dedup.plan import local_tasks  # noqa: E402
from manifests import schema as col  # noqa: E402
from manifests.layout import RunLayout  # noqa: E402
from pipelines.config import RunConfig, dump_config, load_config  # noqa: E402
from pipelines.run import repick  # noqa: E402
from support.scalegen import write_part  # noqa: E402

RESULTS = REPO / "bench" / "results"
NEW_RULE = ["--set", "filters.aesthetic.min_score=5.0"]
CASES = {  # name -> (which run, argv after the run)
    "tune: same rules": ("run", []),
    "tune: new rules, pairs hidden": ("nopairs", NEW_RULE),
    "tune: new rules, survivors re-picked": ("run", NEW_RULE),
    "query: count by status, keep": ("run", ["SELECT status, keep, count(*) FROM manifest GROUP BY ALL"]),
}
EXPECTED_PATH = {"tune: same rules": "as the dedup phase picked them (same rules)",
                 "tune: new rules, pairs hidden": "no stored pairs",
                 "tune: new rules, survivors re-picked": "re-picked by tasks"}


def run_config(root: Path) -> RunConfig:
    dedup = DedupConfig.model_validate({"exact": {"enabled": True}, "minhash": {"enabled": True},
                                        "phash": {"enabled": False}})
    return RunConfig.model_validate({"input": {"path": "generated"}, "output_dir": str(root),
                                     "dedup": dedup.model_dump(mode="json"),
                                     "filters": {"aesthetic": {"enabled": True, "min_score": 3.0}}})


def build_run(root: Path, rows: int, per_file: int) -> dict:
    """Generate, dedup (pairs stored), decide and write the manifest parts of a ``rows``-row run."""
    from dedup.partitioned import run_partitioned
    from manifests.export import shard_sizes
    from manifests.export_parts import write_manifest
    from manifests.shardplan import plan_sizes, spans_by_partition
    from pipelines.run.decide_tasks import decide_partitioned, kept_counts, record_rules

    layout, config, tasks, times = RunLayout.at(root), run_config(root), local_tasks, {}
    bounds = list(range(0, rows, per_file)) + [rows]
    steps = {
        "generate": lambda: tasks(write_part, [(layout, k, a, b) for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]),
        "dedup": lambda: (run_partitioned(config.dedup, layout, None, tasks=tasks), record_rules(config, layout)),
        "decide": lambda: decide_partitioned(config, layout, tasks),
    }
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        times[name] = round(time.perf_counter() - start, 1)
        print(f"build {name}: {times[name]} s", flush=True)
    kept = kept_counts(layout)
    shards = plan_sizes(kept, shard_sizes(sum(kept.values()), 10_000, 8))
    write_manifest(layout, sorted(kept), spans_by_partition(shards), pl.Schema(), tasks, False)
    layout.config.write_text(dump_config(config))
    (root / "rows.json").write_text(json.dumps(rows))
    return times


def without_pairs(run: Path, to: Path) -> Path:
    """A view of ``run`` with its manifest and config but no stored pairs."""
    shutil.rmtree(to, ignore_errors=True)
    to.mkdir(parents=True)
    (to / "manifest").symlink_to(RunLayout.at(run).manifest_dir)
    shutil.copy(run / "config.yaml", to / "config.yaml")
    return to


def survivor_path(run: Path, overrides: list[str]) -> dict:
    """What tune's survivor step does for ``overrides`` (``repick.for_manifest``, as tune calls it),
    in this process: which path, its seconds, and the re-picked survivors against the manifest's own."""
    parts = RunLayout.at(run).manifest_files()
    config = load_config(run, [o for o in overrides if o != "--set"])
    with tempfile.TemporaryDirectory(prefix="tune-bench-") as work:
        start = time.perf_counter()
        found, how = repick.for_manifest(run, parts, config, Path(work), local_tasks)
        record = {"path": how, "in_process_s": round(time.perf_counter() - start, 2)}
        if found is None:
            return record
        new = pl.scan_parquet([str(p) for p in found.every_file()]).select(col.SAMPLE_ID, col.DUPLICATE_OF)
        old = pl.scan_parquet([str(p) for p in parts]).select(col.SAMPLE_ID, col.DUPLICATE_OF)
        counts = old.join(new, on=col.SAMPLE_ID, how="left", suffix="_new").select(
            rows_clustered=pl.col(f"{col.DUPLICATE_OF}_new").is_not_null().sum(),
            duplicate_of_changed=pl.col(col.DUPLICATE_OF).ne_missing(pl.col(f"{col.DUPLICATE_OF}_new")).sum(),
        ).collect()
    return {**record, **counts.row(0, named=True)}


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS in MiB (sampled every 20 ms) of one CLI run (``python -m pipelines ARGV``).
    Not ``os.wait4``'s ru_maxrss: Linux carries the forking parent's peak across exec into the child's."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{err}")
    return wall, peak / 2**20


def cli_argv(name: str, runs: dict[str, Path]) -> list[str]:
    which, rest = CASES[name]
    return [name.split(":")[0], str(runs[which]), *rest]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rows-per-file", type=int, default=100_000, help="rows per ingest unit / manifest part")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--figure", action="store_true", help="also write bench/figures/tune.json")
    args = parser.parse_args()
    root = RESULTS / f"tune-run-{args.rows}"
    built = None
    if not (root / "rows.json").exists() or json.loads((root / "rows.json").read_text()) != args.rows:
        shutil.rmtree(root, ignore_errors=True)
        built = build_run(root, args.rows, args.rows_per_file)
    runs = {"run": root, "nopairs": without_pairs(root, RESULTS / f"tune-run-{args.rows}-nopairs")}
    paths = {}
    for name, expected in EXPECTED_PATH.items():
        which, rest = CASES[name]
        paths[name] = survivor_path(runs[which], rest)
        assert paths[name]["path"] == expected, (name, paths[name])
        print(f"{name}: {paths[name]}", flush=True)
    assert paths["tune: new rules, survivors re-picked"]["duplicate_of_changed"] > 0, "the new rule moved no survivor"
    walls: dict[str, list[float]] = {name: [] for name in CASES}
    rss: dict[str, float] = {name: 0.0 for name in CASES}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeat):  # interleaved: A B C D A B C D ...
        for name in CASES:
            wall, peak = measure(cli_argv(name, runs))
            walls[name].append(round(wall, 3))
            rss[name] = max(rss[name], round(peak))
        loads.append(os.getloadavg()[0])
    results = [{"case": name, "command": "thresher " + " ".join(cli_argv(name, runs)), "wall_s": walls[name],
                "min_s": min(walls[name]), "median_s": sorted(walls[name])[len(walls[name]) // 2],
                "peak_rss_mib": rss[name], "survivors": paths.get(name)} for name in CASES]
    print(f"\n{'case':<40}{'median s':>10}{'min s':>8}{'peak RSS MiB':>14}")
    for r in results:
        print(f"{r['case']:<40}{r['median_s']:>10.2f}{r['min_s']:>8.2f}{r['peak_rss_mib']:>14.0f}")
    manifest_mib = sum(p.stat().st_size for p in RunLayout.at(root).manifest_files()) / 2**20
    record = figure_record(f"PYTHONPATH=. python bench/tune.py --rows {args.rows} --repeat {args.repeat}", loads)
    record.update({"rows": args.rows, "manifest_parts": len(RunLayout.at(root).manifest_files()),
                   "manifest_mib": round(manifest_mib, 1), "build_s": built, "results": results})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"tune-{args.rows}.json").write_text(json.dumps(record, indent=2) + "\n")
    if args.figure:
        print("written", write_figure("tune", record))


if __name__ == "__main__":
    main()
