"""What verifying the keypoints detector's candidates costs per image, by image type: the dedup phase's share of
near-duplicate search with PDQ on (``dedup.pdq.verify``, the default since issue 24).

    PYTHONPATH=. python bench/verify_cost.py [--split report]

The split of ``bench/neardup_eval.py`` is staged and scored as ``--fast`` does (``pdq_keypoints``); its candidates
are the one-process ``dedup.keypoints.candidates`` (capped, refined), and each is verified by
``dedup.keypoints.copy_score`` as a ``keypoints`` task does (placement and the photometric match for keypoint-poor
pairs, else ORB + RANSAC), timed one by one on one core. A pair's time is charged half to each image; the table
gives the CPU milliseconds per image of each type (originals and their edits, and the low-texture negatives), with
the share of candidates that went through placement. Writes bench/results/verify-cost-<split>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.keypoint_scale import RESULTS, features  # noqa: E402
from bench.neardup_eval import METHODS, build_set, run_config  # noqa: E402
from dedup.keypoints import candidates, copy_score, key_rows, placement_tone, shared_keys  # noqa: E402
from dedup.verify import parse_features  # noqa: E402
from pipelines.config import build_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="report", choices=("tune", "report"))
    args = parser.parse_args()
    config = build_config(run_config(Path("/nonexistent/u.parquet"), Path("/nonexistent/run"),
                                     METHODS["pdq_keypoints"]), [])
    verify, tone = config.dedup.pdq.verify, placement_tone(config.dedup)
    keys = verify.keypoints
    files, labels = build_set(args.split)
    values = features(sorted(files.items()), config)
    kind = {sample: labels[sample].kind for sample in values}
    ids = sorted(values)
    rows = key_rows(pl.Series(ids), [values[i] for i in ids], keys)
    pairs = candidates(shared_keys(rows, keys.max_bucket, keys.refine_bits, keys.refine_levels), keys.min_shared,
                       keys.max_candidates).collect().rows()
    spent, placed = defaultdict(float), 0
    for a, b in pairs:
        fewest = min(len(parse_features(values[a])[0]), len(parse_features(values[b])[0]))
        placed += fewest < keys.placement.below_keypoints
        start = time.process_time()
        copy_score(values[a], values[b], verify, tone)
        took = time.process_time() - start
        spent[a] += took / 2
        spent[b] += took / 2
    by_kind = defaultdict(list)
    for sample in ids:
        by_kind[kind[sample]].append(spent[sample] * 1e3)
    table = {k: {"images": len(v), "ms_per_image": round(sum(v) / len(v), 1)} for k, v in sorted(by_kind.items())}
    total = round(sum(spent.values()) * 1e3 / len(ids), 1)
    print(f"{len(ids)} images ({args.split} split), {len(pairs)} candidates ({2 * len(pairs) / len(ids):.1f} per "
          f"image), {placed / max(1, len(pairs)):.0%} through placement\n")
    print(f"{'image type':<20}{'images':>8}{'ms/image':>10}")
    for k, row in table.items():
        print(f"{k:<20}{row['images']:>8}{row['ms_per_image']:>10.1f}")
    print(f"{'all':<20}{len(ids):>8}{total:>10.1f}")
    out = RESULTS / f"verify-cost-{args.split}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"split": args.split, "images": len(ids), "candidates": len(pairs),
                               "placed_share": round(placed / max(1, len(pairs)), 3), "ms_per_image": total,
                               "by_type": table}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
