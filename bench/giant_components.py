"""Giant duplicate components: what the cap (dedup.partitions.max_component_rows) costs and bounds.

    PYTHONPATH=. python bench/giant_components.py [--rows 20000] [--cap 2000] [--chain-rows 400]

Three components of ``rows`` samples each, re-clustered from pair part files by the partitioned engine
with local tasks (``recluster_partitioned``), once with the cap and once without it:

- star: one picture uploaded ``rows`` times (one sha256: equal_key_pairs' star) plus a pHash link per
  hundred copies to a distinct picture;
- chain: ``rows`` distinct pictures, each a pHash pair with the next (random keep scores);
- ordered chain (``chain-rows`` samples, cap at most a quarter of them): the same with the keep score
  falling along the chain, the rounds' worst case (each round can keep only the chain's head).

Per case: the rounds, the most samples and hub links one task held, the wall time with and without
the cap, and whether the duplicates tables are equal. Prints a table and writes
bench/results/giant_components-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dedup.cluster import PAIRS_SCHEMA, with_kind  # noqa: E402
from dedup.config import DedupConfig  # noqa: E402
from dedup.partitioned import recluster_partitioned  # noqa: E402
from dedup.plan import local_tasks  # noqa: E402
from manifests import schema as col  # noqa: E402
from manifests.io import write_parquet  # noqa: E402
from manifests.layout import RunLayout  # noqa: E402
from manifests.schema import Status  # noqa: E402


def case(name: str, rows: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = random.Random(seed)
    ids = [f"{name[0]}{i:07d}" for i in range(rows)]
    if name == "star":
        links = [(ids[0], s, "sha256", 1.0) for s in ids[1:]]
        links += [(ids[i], f"x{i:07d}", "phash", 0.9) for i in range(1, rows, 100)]
        ids += [f"x{i:07d}" for i in range(1, rows, 100)]
    else:
        links = [(a, b, "phash", 0.9) for a, b in zip(ids, ids[1:])]
    score = [float(len(ids) - i) for i in range(len(ids))] if name == "ordered" else [rng.random() for _ in ids]
    pairs = pl.DataFrame(links, schema=["sample_a", "sample_b", "detector", "similarity"], orient="row")
    pairs = with_kind(pairs.cast({"similarity": pl.Float32})).select(list(PAIRS_SCHEMA))
    return pairs, pl.DataFrame({col.SAMPLE_ID: ids, col.AESTHETIC_SCORE: score})


def write_run(root: Path, pairs: pl.DataFrame, scores: pl.DataFrame) -> RunLayout:
    layout = RunLayout.at(root)
    staged = scores.select(col.SAMPLE_ID, pl.lit(Status.SUCCESS).alias(col.STATUS), pl.lit(8).alias(col.ORIGINAL_WIDTH),
                           pl.lit(8).alias(col.ORIGINAL_HEIGHT))
    write_parquet(staged.to_arrow(), layout.staged_dir / "00000.parquet")
    write_parquet(scores.to_arrow(), layout.scores_dir / "00000.parquet")
    write_parquet(pairs.to_arrow(), layout.pairs_dir / "pairs-00000.parquet")
    return layout


def measure(root: Path, pairs: pl.DataFrame, scores: pl.DataFrame, cap: int) -> dict:
    held: dict[str, list[int]] = {}

    def recording(fn, args, num_gpus=0.0):
        out = local_tasks(fn, args)
        if fn.__name__ in ("nodes", "best_links", "keep_group"):
            held.setdefault(fn.__name__, []).extend(o["rows"] if isinstance(o, dict) else o for o in out)
        return out

    config = DedupConfig.model_validate({"phash": {"enabled": True}, "partitions": {"max_component_rows": cap}})
    layout = write_run(root, pairs, scores)
    start = time.perf_counter()
    stats = recluster_partitioned(config, layout, recording)
    wall = time.perf_counter() - start
    table = pl.read_parquet(layout.duplicates_files()).sort(col.SAMPLE_ID)
    return {"wall_s": round(wall, 2), "rounds": stats["giant_rounds"], "clusters": stats["clusters"],
            "duplicates": stats["duplicates"], "most_samples_in_a_task": max(held.get("nodes", [0]) +
                                                                           held.get("keep_group", [0])),
            "most_links_in_a_task": max(held.get("best_links", [0])), "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--cap", type=int, default=2_000)
    parser.add_argument("--chain-rows", type=int, default=400)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="giant-bench-") as tmp:
        for name, rows in (("star", args.rows), ("chain", args.rows), ("ordered", args.chain_rows)):
            pairs, scores = case(name, rows)
            cap = args.cap if name != "ordered" else min(args.cap, rows // 4)  # over the cap, or it is no giant
            capped = measure(Path(tmp) / f"{name}-capped", pairs, scores, cap)
            whole = measure(Path(tmp) / f"{name}-whole", pairs, scores, 10 ** 9)
            same = capped.pop("table").equals(whole.pop("table"))
            results.append({"case": name, "samples": scores.height, "pairs": pairs.height, "cap": cap,
                            "capped": capped, "uncapped": whole, "equal": same})
    print(f"{'case':8} {'samples':>8} {'cap':>6} {'rounds':>6} {'max samples/task':>16} {'max links/task':>14} "
          f"{'capped s':>9} {'whole s':>8} {'whole max':>9} equal")
    for r in results:
        c, w = r["capped"], r["uncapped"]
        print(f"{r['case']:8} {r['samples']:>8} {r['cap']:>6} {c['rounds']:>6} {c['most_samples_in_a_task']:>16} "
              f"{c['most_links_in_a_task']:>14} {c['wall_s']:>9} {w['wall_s']:>8} {w['most_samples_in_a_task']:>9} "
              f"{r['equal']}")
    out = Path(__file__).resolve().parent / "results" / f"giant_components-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(out)


if __name__ == "__main__":
    main()
