"""What the keypoints detector's candidate search costs, and which geometric copies it still reaches, as the corpus
grows: one split of ``bench/neardup_eval.py`` inside a growing background of distinct generated images.

    PYTHONPATH=. python bench/keypoint_scale.py [--split tune] [--seeds 4] [--per-type 200] [--set max_bucket=128]

The split's images (originals, edits, negatives) are staged and scored as ``neardup_eval.py --fast`` does
(``pdq_keypoints``); the background is ``support.evalset.hard_originals`` with seeds 1..``--seeds`` (the split uses
seed 0), both halves, ``--per-type`` of each hard type: flat marks, gradients, line art, pastels, text slides and
products on white, images whose glyphs and shapes share the split's keypoint vocabulary, so the background is a
pessimistic one for chance collisions (a crawl is mostly photos). At growing shares of the background it reports
the key rows, shared-key rows (the join's shuffle) and candidates per image, uncapped and with each
``max_candidates``, and the split's (original, geometric edit) pairs still among the candidates, per image type.
A key held by more than ``max_bucket`` images pairs nobody, so the shared rows per image are bounded
(``key rows x (max_bucket - 1) / 2``) and a growing corpus loses the copies whose keys become common instead of
growing the candidates. Prints a table, writes bench/results/keypoint-scale-<split>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.geometry_eval import GEOMETRIC  # noqa: E402
from bench.neardup_eval import METHODS, build_set, run_config  # noqa: E402
from bench.neardup_fast import score, staged  # noqa: E402
from dedup.keypoints import candidates, key_rows, shared_keys  # noqa: E402
from manifests import schema as col  # noqa: E402
from pipelines.cli.corpus import jpeg  # noqa: E402
from pipelines.config import build_config  # noqa: E402
from support.evalset import hard_originals  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 500


def features(files: list[tuple[str, bytes]], config) -> dict[str, bytes]:
    """sample_id -> orb_features, staged and scored as the pipeline does, a batch at a time."""
    out = {}
    for start in range(0, len(files), BATCH):
        table, _ = score(config, staged(tuple(files[start:start + BATCH]), config.crawl))
        out.update(zip(table[col.SAMPLE_ID].to_pylist(), table[col.ORB_FEATURES].to_pylist()))
    return out


def background(seeds: int, per_type: int) -> list[tuple[str, bytes]]:
    return [(f"/bg/{name}.jpg", jpeg(img.convert("RGB"), 90))
            for seed in range(1, seeds + 1) for split in ("tune", "report")
            for name, (img, _) in hard_originals(split, seed=seed, per_type=per_type).items()]


def reach(rows: pl.DataFrame, images: int, keys, wanted: dict[tuple[str, str], str], caps: list[int | None]) -> dict:
    shared = shared_keys(rows, keys.max_bucket, keys.refine_bits, keys.refine_levels).collect()
    out = {"images": images, "key_rows_per_image": round(rows.height / images, 1),
           "shared_rows_per_image": round(shared.height / images, 1)}
    for most in caps:
        found = {tuple(r) for r in candidates(shared.lazy(), keys.min_shared, most).collect().rows()}
        hit = found & set(wanted)
        kinds = Counter(wanted.values())
        out[f"max_candidates={most}"] = {
            "candidates_per_image": round(len(found) / images, 2), "geometric_reached": len(hit),
            "geometric_share": round(len(hit) / max(1, len(wanted)), 3),
            "by_type": {k: round(sum(wanted[p] == k for p in hit) / n, 3) for k, n in sorted(kinds.items())}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "report"), default="tune")
    parser.add_argument("--seeds", type=int, default=4, help="background seeds (1..N), both halves each")
    parser.add_argument("--per-type", type=int, default=200, help="background images of each hard type per seed+half")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="a keypoints setting, e.g. max_bucket=128")
    args = parser.parse_args()
    start = time.time()
    config = build_config(run_config(Path("/nonexistent/u.parquet"), Path("/nonexistent/run"),
                                     METHODS["pdq_keypoints"]), [])
    keys = config.dedup.pdq.verify.keypoints.model_copy(
        update={k: int(v) for k, v in (o.split("=", 1) for o in args.overrides)})
    files, labels = build_set(args.split)
    split = features(sorted(files.items()), config)
    extra = features(background(args.seeds, args.per_type), config)
    wanted = {tuple(sorted((f"/o/{label.group}/original.jpg", path))): label.kind
              for path, label in labels.items() if label.edit in GEOMETRIC}
    ids = sorted(split)
    order = sorted(extra)
    order = [order[i] for i in np.random.default_rng(0).permutation(len(order))]
    rows_split = key_rows(pl.Series(ids), [split[i] for i in ids], keys)
    rows_extra = key_rows(pl.Series(order), [extra[i] for i in order], keys)
    caps = [None, keys.max_candidates, 10]
    points = []
    for share in (0, 8, 4, 2, 1):
        n = len(order) // share if share else 0
        chosen = pl.Series(order[:n])
        rows = pl.concat([rows_split, rows_extra.filter(pl.col(col.SAMPLE_ID).is_in(chosen.implode()))])
        points.append(reach(rows, len(ids) + n, keys, wanted, caps))
        p = points[-1]
        print(f"{p['images']:>7} images  key rows/img {p['key_rows_per_image']:>6}  shared rows/img "
              f"{p['shared_rows_per_image']:>7}  " + "  ".join(
                  f"cap {str(m):>4}: cand/img {p[f'max_candidates={m}']['candidates_per_image']:>6} geometric "
                  f"{p[f'max_candidates={m}']['geometric_reached']}/{len(wanted)}" for m in caps), flush=True)
    last = points[-1][f"max_candidates={keys.max_candidates}"]["by_type"]
    print("geometric copies reached at the largest size, by type:", json.dumps(last))
    out = RESULTS / f"keypoint-scale-{args.split}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    bound = points[-1]["key_rows_per_image"] * (keys.max_bucket - 1) / 2
    out.write_text(json.dumps({"command": "bench/keypoint_scale.py " + " ".join(sys.argv[1:]), "split": args.split,
                               "background": {"seeds": args.seeds, "per_type": args.per_type, "images": len(order)},
                               "keypoints": keys.model_dump(exclude={"placement"}), "geometric_pairs": len(wanted),
                               "shared_rows_per_image_bound": round(bound, 1), "points": points,
                               "seconds": round(time.time() - start, 1)}, indent=1))
    print(f"shared rows per image are bounded by {bound:.0f} (key rows x (max_bucket - 1) / 2)\nwrote {out}")


if __name__ == "__main__":
    main()
