"""Benchmark the greedy keep policy: rounds (``dedup.keep.keep_greedy``) against the one-by-one walk it replaced
(``support.dedup_reference.keep_greedy_walk``), on the pairs the scale generator plants in a run.

    PYTHONPATH=. python bench/keep_rounds.py [--rows 10000000] [--figure]

The pairs are ``bench.review.planted_pairs`` (sha256, pixel-hash, caption-MinHash and pHash copies, 900k pairs
over 1.7M samples at 10M rows), all counted. Two rankings: a random one (as scores rank a real run) and
sample_id order (copies are planted after their originals, so chains line up with the ranking: the most
rounds). Both policies run on the same arrays in this process, A B A B; the table gives the best of two and
the ratio, and checks that the survivors are equal. Writes bench/results/keep-rounds-<rows>.json
(``--figure``: also bench/figures/keep-rounds.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from bench.machine import figure_record, write_figure  # noqa: E402
from bench.review import planted_pairs  # noqa: E402
from dedup.cluster import DETECTOR, SAMPLE_A, SAMPLE_B, SIMILARITY  # noqa: E402
from dedup.keep import Classes, keep_greedy  # noqa: E402
from manifests import schema as col  # noqa: E402
from support.dedup_reference import keep_greedy_walk  # noqa: E402

RESULTS = REPO / "bench" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--figure", action="store_true")
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    pairs = planted_pairs(args.rows)
    ids = pl.concat([pairs[SAMPLE_A], pairs[SAMPLE_B]]).unique().sort()
    a, b = (ids.search_sorted(pairs[c]).to_numpy() for c in (SAMPLE_A, SAMPLE_B))
    kind = pairs[col.DUP_KIND].to_numpy()
    classes = Classes.of(len(ids), a, b, pairs[DETECTOR].to_numpy(), kind, pairs[SIMILARITY].to_numpy())
    rows = []
    print(f"{len(ids):,} samples, {len(a):,} pairs (planted in {args.rows:,} rows)")
    print(f"{'ranking':<12}{'rounds s':>10}{'walk s':>10}{'walk / rounds':>15}  equal")
    for name, order in (("random", np.random.default_rng(0).permutation(len(ids))), ("sample_id", np.arange(len(ids)))):
        times: dict[str, list[float]] = {"rounds": [], "walk": []}
        for _ in range(2):
            for label, policy in (("rounds", keep_greedy), ("walk", keep_greedy_walk)):
                start = time.perf_counter()
                survivors = policy(order, classes, a, b, kind)
                times[label].append(time.perf_counter() - start)
                if label == "rounds":
                    got = survivors
        equal = bool(np.array_equal(got, survivors))
        best = {k: min(v) for k, v in times.items()}
        rows.append({"ranking": name, "rounds_s": round(best["rounds"], 3), "walk_s": round(best["walk"], 3),
                     "ratio": round(best["walk"] / best["rounds"], 1), "equal": equal})
        print(f"{name:<12}{best['rounds']:>10.2f}{best['walk']:>10.2f}{best['walk'] / best['rounds']:>15.1f}  {equal}")
        load.append(os.getloadavg()[0])
    command = f"PYTHONPATH=. python bench/keep_rounds.py --rows {args.rows}"
    record = {**figure_record(command, load), "samples": len(ids), "pairs": len(a), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"keep-rounds-{args.rows}.json"
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    if args.figure:
        print("written", write_figure("keep-rounds", record))
    if not all(r["equal"] for r in rows):
        sys.exit("the rounds and the walk disagree")


if __name__ == "__main__":
    main()
