"""Benchmark ``thresher tune`` and ``thresher query`` on a synthetic manifest (default 10M rows).

Each command runs as its own process (the real CLI), so its wall time includes start-up and its
peak RSS (``os.wait4``) is its own. Prints a table and writes ``bench/results/tune.json``.

    PYTHONPATH=. python bench/tune.py [--rows 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from filters.decide import decide  # noqa: E402
from manifests.synthetic import write_manifest  # noqa: E402
from pipelines.config import build_config, dump_config  # noqa: E402

RESULTS = REPO / "bench" / "results"
CASES = {
    "tune: 3 rule thresholds": ["tune", "{run}", "--set", "filters.rules.min_image_side=256",
                                "--set", "filters.rules.min_caption_words=3", "--set", "filters.rules.max_aspect_ratio=2.5"],
    "tune: no change": ["tune", "{run}"],
    "query: count by status, keep": ["query", "{run}", "SELECT status, keep, count(*) FROM manifest GROUP BY ALL"],
    "query: rows per reason": ["query", "{run}",
                               "SELECT unnest(reject_reasons) AS reason, count(*) AS n FROM manifest GROUP BY reason"],
    "query: score filter to parquet": ["query", "{run}",
                                       "SELECT sample_id, url, clip_score FROM manifest WHERE clip_score < 0.2",
                                       "--out", "{out}/low_clip.parquet"],
}


def make_run(root: Path, rows: int) -> Path:
    manifest = root / "manifest.parquet"
    if manifest.exists() and json.loads((root / "rows.json").read_text()) == rows:
        return root
    config = build_config({"output_dir": str(root), "input": {"path": str(root / "unused.parquet")}})
    start = time.perf_counter()
    write_manifest(manifest, rows, partial(decide, config=config.filters), seed=0)
    (root / "config.yaml").write_text(dump_config(config))
    (root / "rows.json").write_text(json.dumps(rows))
    print(f"generated {rows:,} rows in {time.perf_counter() - start:.1f} s "
          f"({manifest.stat().st_size / 2**20:.0f} MiB)")
    return root


def measure(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB, and the last line printed, of one CLI run."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    out = proc.stdout.read().decode()
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{err}")
    lines = [line for line in out.splitlines() if line.strip()]
    return wall, usage.ru_maxrss / 1024, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run = make_run(RESULTS / f"tune-run-{args.rows}", args.rows)
    out = RESULTS / "tune-out"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, template in CASES.items():
        argv = [a.format(run=run, out=out) for a in template]
        runs = [measure(argv) for _ in range(args.repeat)]
        walls = sorted(w for w, _, _ in runs)
        results.append({"case": name, "argv": argv, "wall_s": walls, "median_wall_s": walls[len(walls) // 2],
                        "peak_rss_mib": max(r for _, r, _ in runs), "last_line": runs[-1][2]})
    print(f"\n{'case':<34}{'median s':>10}{'min s':>8}{'peak RSS MiB':>14}")
    for r in results:
        print(f"{r['case']:<34}{r['median_wall_s']:>10.2f}{r['wall_s'][0]:>8.2f}{r['peak_rss_mib']:>14.0f}")
    record = {"rows": args.rows, "repeat": args.repeat, "cpus": os.cpu_count(), "python": platform.python_version(),
              "manifest_mib": round((run / "manifest.parquet").stat().st_size / 2**20, 1), "results": results}
    path = RESULTS / "tune.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
