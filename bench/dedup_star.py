"""The exact-group star from the field, generated: how many copies of one image survive dedup.

    PYTHONPATH=. python bench/dedup_star.py [--copies 167]

One image under ``copies`` URLs (one sha256), a pixel-identical sibling (same pixels, other bytes),
and the group's centre (its smallest sample_id, the centre of equal_key_pairs' star) either rejected
by another rule or linked by pHash to a better picture. Pairs come from the real equal_key_pairs;
clusters from the real cluster() with the keep policy's eligibility. Run it on two checkouts to
compare. Prints a table and writes bench/results/dedup_star-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dedup.cluster import PAIRS_SCHEMA, cluster, with_kind  # noqa: E402
from dedup.config import DedupConfig  # noqa: E402
from dedup.detectors import equal_key_pairs  # noqa: E402
from manifests import schema as col  # noqa: E402

ELIGIBLE = "eligible"


def case(copies: int, centre: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"{i:05d}" for i in range(copies + 2)]  # copies, the sibling, a better picture
    rows = pl.DataFrame({col.SAMPLE_ID: ids[:-1], col.SHA256: ["a" * 64] * copies + ["b" * 64],
                         col.PIXEL_HASH: ["p" * 64] * (copies + 1)}).lazy()
    pairs = [equal_key_pairs(rows, col.SHA256, "sha256"), equal_key_pairs(rows, col.PIXEL_HASH, "pixels")]
    if centre == "linked":
        link = pl.DataFrame({"sample_a": [ids[0]], "sample_b": [ids[-1]], "detector": ["phash"], "similarity": [0.9]})
        pairs.append(with_kind(link.cast({"similarity": pl.Float32})).select(list(PAIRS_SCHEMA)))
    eligible = [centre != "rejected"] + [True] * (copies + 1)
    scores = pl.DataFrame({col.SAMPLE_ID: ids, ELIGIBLE: eligible,
                           col.AESTHETIC_SCORE: [5.0] * (copies + 1) + [6.0]})
    return pl.concat(pairs), scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=167)
    args = parser.parse_args()
    config = DedupConfig()
    results = []
    for centre in ("rejected", "linked"):
        pairs, scores = case(args.copies, centre)
        for mode in ("greedy", "component"):
            start = time.perf_counter()
            out = cluster(pairs, config.thresholds(), scores, (ELIGIBLE, *config.keep.order), mode)
            dropped = set(out.filter(pl.col(col.DUPLICATE_OF).is_not_null())[col.SAMPLE_ID])
            copies = [s for s in scores[col.SAMPLE_ID][:-1] if s not in dropped]
            results.append({"centre": centre, "mode": mode, "rows": args.copies + 1, "copies_kept": len(copies),
                            "wall_ms": round((time.perf_counter() - start) * 1000, 1)})
    print(f"{'centre':<10}{'mode':<11}{'rows':>6}{'copies kept':>13}{'ms':>8}")
    for r in results:
        print(f"{r['centre']:<10}{r['mode']:<11}{r['rows']:>6}{r['copies_kept']:>13}{r['wall_ms']:>8}")
    out = Path(__file__).resolve().parent / "results" / f"dedup_star-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
