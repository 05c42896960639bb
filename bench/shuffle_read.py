"""One bucket's read from a shuffle, Parquet row groups (one file per task, ``_bucket`` statistics,
commit d6268ac) vs the offset-indexed IPC layout (``dedup/shuffle.py``: data + index per task), as
producers x buckets grow.

    PYTHONPATH=. python bench/shuffle_read.py [--reads 10] [--grid 40x40x40000,40x400x40000,...]

Each producer writes ``rows`` rows (two 11-character ids and a float, as a pairs shuffle holds) by
``write_buckets``; the reader times ``scan_bucket(root, b).collect()`` for ``--reads`` buckets (files in
the page cache, as a reducer right after its map step on one node finds them). It prints a table and
writes bench/results/shuffle-read.json: write time, bytes written, the bytes a reducer reads besides
its rows (every footer, or 16 bytes of every index) and one bucket's read time, for the old layout and
the new one with lz4 and with zstd IPC compression.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import figure_record, write_figure  # noqa: E402
from dedup import shuffle as new  # noqa: E402

OLD_COMMIT = "d6268ac"  # the Parquet row-group layout
SCHEMA = {"a": pl.String, "b": pl.String, "s": pl.Float32}


def old_module(tmp: Path):
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:dedup/shuffle.py"],
                            check=True, capture_output=True, text=True).stdout
    path = tmp / "old_shuffle.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_shuffle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def producer_frame(seed: int, rows: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ids = [f"{x:011d}" for x in rng.integers(0, 10**10, rows)]
    return pl.DataFrame({"a": ids, "b": ids[::-1], "s": rng.random(rows).astype(np.float32)}, schema=SCHEMA)


def measure(layout: str, module, producers: int, buckets: int, rows: int, reads: int, root: Path) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    frames = [producer_frame(p, rows) for p in range(producers)]
    start = time.perf_counter()
    for p, frame in enumerate(frames):
        module.write_buckets(frame, pl.col("a"), buckets, root, f"{p:05d}")
    write_s = time.perf_counter() - start
    files = sorted(root.iterdir())
    written = sum(f.stat().st_size for f in files)
    if layout == "parquet":
        overhead = sum(pq.ParquetFile(f).metadata.serialized_size + 8 for f in files)  # footer + its length
    else:
        overhead = 16 * sum(1 for f in files if f.suffix == new.INDEX)
    chosen = np.linspace(0, buckets - 1, reads).astype(int)
    module.scan_bucket(root, int(chosen[0]), SCHEMA).collect()  # warm imports and the page cache
    start = time.perf_counter()
    got = [module.scan_bucket(root, int(b), SCHEMA).collect() for b in chosen]
    read_s = (time.perf_counter() - start) / reads
    checksum = [(f.height, f["a"].sort().to_list()[:3]) for f in got]
    shutil.rmtree(root)
    return {"layout": layout, "producers": producers, "buckets": buckets, "rows_per_producer": rows,
            "write_s": round(write_s, 3), "bytes_written": written, "files": len(files),
            "reducer_overhead_bytes": overhead, "bucket_read_ms": round(read_s * 1000, 2),
            "rows_per_bucket": float(np.mean([f.height for f in got])), "_check": checksum}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=10)
    parser.add_argument("--grid", default="40x40x40000,40x400x40000,40x4000x40000,400x400x10000",
                        help="producers x buckets x rows per producer, comma separated")
    parser.add_argument("--figure", action="store_true", help="also write bench/figures/shuffle_read.json")
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    layouts = []
    with tempfile.TemporaryDirectory(prefix="shuffle-read-") as tmp:
        old = old_module(Path(tmp))
        results = []
        for cell in args.grid.split(","):
            producers, buckets, rows = (int(x) for x in cell.split("x"))
            cell_results = [measure("parquet", old, producers, buckets, rows, args.reads, Path(tmp) / "s")]
            for codec in ("lz4", "zstd"):
                new.IPC_OPTIONS = ipc.IpcWriteOptions(compression=codec)
                cell_results.append(measure(f"index+{codec}", new, producers, buckets, rows, args.reads,
                                            Path(tmp) / "s"))
            checks = {r.pop("_check").__repr__() for r in cell_results}
            assert len(checks) == 1, f"{cell}: the layouts read different rows"
            base = cell_results[0]
            for r in cell_results:
                r["read_vs_parquet"] = round(r["bucket_read_ms"] / base["bucket_read_ms"], 3)
                r["bytes_vs_parquet"] = round(r["bytes_written"] / base["bytes_written"], 3)
                print(f"{producers:5d} x {buckets:5d}  {r['layout']:10s} write {r['write_s']:7.2f} s  "
                      f"written {r['bytes_written'] / 2**20:8.2f} MiB ({r['bytes_vs_parquet']:.2f}x)  "
                      f"reducer overhead {r['reducer_overhead_bytes'] / 2**10:9.1f} KiB  "
                      f"bucket read {r['bucket_read_ms']:8.2f} ms ({r['read_vs_parquet']:.2f}x)  "
                      f"rows/bucket {r['rows_per_bucket']:.0f}", flush=True)
            results += cell_results
            layouts.append(cell)
            loads.append(os.getloadavg()[0])
    out = REPO / "bench" / "results" / "shuffle-read.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"grid": layouts, "reads": args.reads, "old_commit": OLD_COMMIT, "results": results}
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")
    if args.figure:
        command = " ".join(["PYTHONPATH=. python bench/shuffle_read.py", *sys.argv[1:]])
        print("written", write_figure("shuffle_read", {**figure_record(command, loads), **record}))


if __name__ == "__main__":
    main()
