"""Peak memory of the semantic and PDQ finders: one process vs partitioned tasks, at two run sizes.

    PYTHONPATH=. python bench/finders.py --rows 50000 200000 [--bytes-per-bucket 8388608] [--dims 256]
        [--per-file 25000] [--map-bytes N]

A generated run (scalegen rows; a float16 clip_embedding and PDQ codes per row, copies planted from
scalegen's pHash sources) is written once per size. Each (detector, path, size) then runs in a fresh
child process that reports its wall time and peak RSS (ru_maxrss); k-means and IVF quantizers train on
``TRAIN_SAMPLE`` rows/codes at both sizes: ``one`` is ``support.dedup_reference.run_dedup``,
``partitioned`` is ``dedup.partitioned.run_partitioned`` with its tasks run in that same process one
after another (``local_tasks``), so its peak is the largest of the driver and every task. The table
gives each peak and its ratio to the smaller size's, the pairs found and the partitioned path's task
count (``--map-bytes 1``: one map task per score file). Writes bench/results/finders-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dedup.config import DedupConfig  # noqa: E402
from support.scalegen import mix, sources, write_part  # noqa: E402
from manifests import schema as col  # noqa: E402
from manifests.layout import RunLayout  # noqa: E402

PER_FILE = 25_000
TRAIN_SAMPLE = 20_000


def _uniform(keys: np.ndarray) -> np.ndarray:
    return ((mix(keys) >> np.uint64(11)) / float(1 << 53)) * 2 - 1


def columns(index: np.ndarray, dims: int) -> pl.DataFrame:
    """clip_embedding (copies: source + noise) and pdq_codes/pdq_quality (copies: source with 0-20 bit flips)."""
    src = sources(index, "phash")
    j = np.arange(dims, dtype=np.uint64)
    base = _uniform(src.astype(np.uint64)[:, None] * np.uint64(dims) + j + np.uint64(1 << 44))
    noise = _uniform(index.astype(np.uint64)[:, None] * np.uint64(dims) + j + np.uint64(1 << 45))
    vectors = (base + 0.15 * noise * (src != index)[:, None]).astype(np.float16)
    words = np.arange(40, dtype=np.uint64)  # 10 codes x 32 bytes
    codes = mix(src.astype(np.uint64)[:, None] * np.uint64(40) + words + np.uint64(1 << 46)).view(np.uint8)
    flips = (mix(index.astype(np.uint64)[:, None] * np.uint64(20) + np.arange(20, dtype=np.uint64)) % np.uint64(2560))
    flips = np.where((src != index)[:, None], flips, np.uint64(1 << 20))  # an original flips nothing
    rows, bits = np.nonzero(flips < 2560)
    np.bitwise_xor.at(codes, (rows, (flips[rows, bits] // 8).astype(np.int64)),
                      (1 << (flips[rows, bits] % 8)).astype(np.uint8))
    packed = np.concatenate([np.full((len(index), 2), 100, np.uint8), codes], axis=1)
    fixed = pa.Array.from_buffers(pa.binary(packed.shape[1]), len(index), [None, pa.py_buffer(packed.tobytes())])
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dims)
    return pl.from_arrow(pa.table({col.CLIP_EMBEDDING: embedding, col.PDQ_CODES: fixed.cast(pa.binary()),
                                   col.PDQ_QUALITY: pa.array(np.full(len(index), 100, np.int16))}))


def generate(root: Path, rows: int, dims: int, per_file: int = PER_FILE) -> RunLayout:
    layout = RunLayout.at(root)
    for part, start in enumerate(range(0, rows, per_file)):
        stop = min(rows, start + per_file)
        write_part(layout, part, start, stop)
        path = layout.scores_dir / f"{part:05d}.parquet"
        pl.concat([pl.read_parquet(path), columns(np.arange(start, stop), dims)], how="horizontal").write_parquet(path)
    return layout


def config(detector: str, bytes_per_bucket: int, map_bytes: int | None = None) -> DedupConfig:
    # Training samples capped below both sizes, as they are at scale (the defaults, 100k-200k rows, would
    # make the driver's sample the thing that grows between two small runs).
    extra = {"train_sample": TRAIN_SAMPLE} if detector == "semantic" else {}
    return DedupConfig.model_validate({detector: {"enabled": True, **extra}, "exact": {"enabled": False},
                                       "search": {"use_gpu": False, "train_sample": TRAIN_SAMPLE},
                                       "partitions": {"bytes_per_bucket": bytes_per_bucket,
                                                      **({"bytes_per_map_task": map_bytes} if map_bytes else {})}})


def _measure(root: str, detector: str, path: str, bytes_per_bucket: int, map_bytes: int | None, queue) -> None:
    from dedup.partitioned import run_partitioned
    from dedup.plan import local_tasks
    from support.dedup_reference import run_dedup

    layout, cfg = RunLayout.at(Path(root)), config(detector, bytes_per_bucket, map_bytes)
    tasks = [0]

    def counted(fn, args):
        tasks[0] += len(args)
        return local_tasks(fn, args)

    start = time.perf_counter()
    stats = run_dedup(cfg, layout) if path == "one" else run_partitioned(cfg, layout, tasks=counted)
    pairs = sum(p["pairs"] for p in stats["pairs"].values())
    queue.put({"wall_s": round(time.perf_counter() - start, 2), "pairs": pairs, "tasks": tasks[0],
               "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)})


def measure(root: Path, detector: str, path: str, bytes_per_bucket: int, map_bytes: int | None) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_measure, args=(str(root), detector, path, bytes_per_bucket, map_bytes, queue))
    child.start()
    out = queue.get()
    child.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs=2, default=[50_000, 200_000])
    parser.add_argument("--dims", type=int, default=256)
    parser.add_argument("--bytes-per-bucket", type=int, default=8 << 20)
    parser.add_argument("--per-file", type=int, default=PER_FILE, help="rows per score file")
    parser.add_argument("--map-bytes", type=int, default=None,
                        help="dedup.partitions.bytes_per_map_task (default: the config's; 1: a map task per file)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            layout = generate(Path(tmp) / str(rows), rows, args.dims, args.per_file)
            for detector in ("semantic", "pdq"):
                for path in ("one", "partitioned"):
                    results.append({"rows": rows, "detector": detector, "path": path,
                                    **measure(layout.root, detector, path, args.bytes_per_bucket,
                                              args.map_bytes)})
                    print(results[-1], flush=True)
    small, large = args.rows
    print(f"\n{'detector':10} {'path':12} {'peak MiB ' + str(small):>16} {'peak MiB ' + str(large):>16} "
          f"{'ratio':>6} {'pairs':>16} {'wall s':>14} {'tasks':>12}")
    for detector in ("semantic", "pdq"):
        for path in ("one", "partitioned"):
            a, b = (next(r for r in results if r["rows"] == n and r["detector"] == detector and r["path"] == path)
                    for n in (small, large))
            print(f"{detector:10} {path:12} {a['peak_mib']:>16} {b['peak_mib']:>16} "
                  f"{b['peak_mib'] / a['peak_mib']:>6.2f} {str(a['pairs']) + ' / ' + str(b['pairs']):>16} "
                  f"{str(a['wall_s']) + ' / ' + str(b['wall_s']):>14} "
                  f"{str(a['tasks']) + ' / ' + str(b['tasks']):>12}")
    out = Path(__file__).parent / "results" / f"finders-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
