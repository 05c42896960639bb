"""Copies of keypoint-poor images by thumbnail placement: candidates, then the settings, chosen on one split.

    PYTHONPATH=. python bench/placement_eval.py [--negatives 300]

For each split (``bench.geometry_eval.build``: originals with that split's edits, plus hard negatives), the score
phase's ``orb_features`` of every image, then the keypoints detector's candidates as production finds them
(``dedup.keypoints.key_rows`` with palette keys, ``shared_keys``, ``candidates``). Of the candidates with fewer
than ``placement.below_keypoints`` keypoints on one side (those ``copy_score`` places first), and of
every such (original, crop or rotation) pair, the best placement (``dedup.placement.placement``) is measured once;
then each combination of the settings in ``GRID`` is applied. The tuning split picks the combination that places
the most geometric copies with no false pair (ties: the strictest); the reporting split is shown with it.
Reports candidate recall (the geometric copies among the candidates), placement recall per edit and per image
type, false pairs, and milliseconds per placement. Prints tables, writes bench/results/placement-<time>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.geometry_candidates import RESULTS, features, true_pairs  # noqa: E402
from bench.geometry_eval import CONFIG, build  # noqa: E402
from dedup.keypoints import candidates, key_rows, shared_keys  # noqa: E402
from dedup.placement import placement  # noqa: E402
from dedup.verify import parse_features, thumbnail  # noqa: E402

GRID = {"max_differing": (0.02, 0.05, 0.08), "max_distance": (6.0, 10.0), "max_relative": (0.2, 0.3, 0.4),
        "min_variation": (2.0, 3.0, 5.0), "max_subject_distance": (10.0, float("inf"))}


def measure(split: str, negatives: int) -> dict:
    images = build(split, negatives)
    values = features(images)
    keys = CONFIG.verify.keypoints
    ids = pl.Series([f"{i:06d}" for i in range(len(images))])
    shared = shared_keys(key_rows(ids, values, keys), keys.max_bucket, keys.refine_bits, keys.refine_levels)
    found = candidates(shared, keys.min_shared, keys.max_candidates).collect()
    pairs = {(int(a), int(b)) for a, b in found.rows()}
    points = [len(parse_features(v)[0]) for v in values]
    poor = lambda p: min(points[p[0]], points[p[1]]) < keys.placement.below_keypoints  # noqa: E731
    wanted = {p: v for p, v in true_pairs(images).items() if poor(p)}
    judged, start = {}, time.perf_counter()
    for p in sorted({p for p in pairs if poor(p)} | set(wanted)):
        judged[p] = placement(thumbnail(values[p[0]]), thumbnail(values[p[1]]))
    spent = (time.perf_counter() - start) / max(1, len(judged))
    group = [im["group"] for im in images]
    return {"split": split, "images": len(images), "candidates": len(pairs), "judged": len(judged),
            "ms_per_placement": round(1000 * spent, 2), "wanted": wanted, "pairs": pairs, "judged_pairs": judged,
            "false": [p for p in judged if p in pairs and group[p[0]] != group[p[1]]], "names": [im["name"] for im in images]}


def apply(m: dict, setting: dict) -> dict:
    def passes(p):
        found = m["judged_pairs"][p]
        return found is not None and (found.differing <= setting["max_differing"]
                                      and found.distance <= setting["max_distance"]
                                      and found.variation >= setting["min_variation"]
                                      and found.relative <= setting["max_relative"]
                                      and found.subject <= setting["max_subject_distance"])
    by_edit, by_type = defaultdict(list), defaultdict(list)
    for p, (edit, kind) in m["wanted"].items():
        hit = p in m["pairs"] and passes(p)
        by_edit[edit].append(hit)
        by_type[kind].append(hit)
    false = [p for p in m["false"] if passes(p)]
    hits = sum(sum(v) for v in by_edit.values())
    return {"placed": hits, "geometric_poor": len(m["wanted"]), "false_pairs": len(false),
            "false": [f"{m['names'][a]} ~ {m['names'][b]}" for a, b in false[:10]],
            "candidate_recall": round(float(np.mean([p in m["pairs"] for p in m["wanted"]])), 3),
            "recall_per_edit": {e: f"{sum(v)}/{len(v)}" for e, v in sorted(by_edit.items())},
            "recall_per_type": {t: f"{sum(v)}/{len(v)}" for t, v in sorted(by_type.items())}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--negatives", type=int, default=300)
    args = parser.parse_args()
    tune, report = (measure(s, args.negatives) for s in ("tune", "report"))
    settings = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    scored = [(apply(tune, s), s) for s in settings]
    clean = [(r, s) for r, s in scored if r["false_pairs"] == 0]
    strictness = lambda s: (s["max_differing"], s["max_distance"], s["max_relative"], -s["min_variation"])  # noqa: E731
    chosen_result, chosen = max(clean, key=lambda rs: (rs[0]["placed"], tuple(-x for x in strictness(rs[1]))))
    default = dict(CONFIG.verify.keypoints.placement.model_dump(include=set(GRID)))
    out = {"command": " ".join(sys.argv), "chosen_on_tune": chosen, "default": default, "splits": {}}
    for m in (tune, report):
        shown = {"chosen": apply(m, chosen), "default": apply(m, default)}
        out["splits"][m["split"]] = {"images": m["images"], "candidates": m["candidates"], "judged": m["judged"],
                                     "ms_per_placement": m["ms_per_placement"], **shown}
    print(f"chosen on tune: {chosen} (default {default})")
    print(f"{'split':8}{'settings':>10}{'cands':>8}{'cand.rec':>10}{'placed':>12}{'false':>7}{'ms/pl':>8}")
    for split, r in out["splits"].items():
        for name in ("chosen", "default"):
            x = r[name]
            print(f"{split:8}{name:>10}{r['candidates']:>8}{x['candidate_recall']:>10}"
                  f"{x['placed']:>6}/{x['geometric_poor']:<5}{x['false_pairs']:>7}{r['ms_per_placement']:>8}")
        print("   per edit:", r["default"]["recall_per_edit"])
        print("   per type:", r["default"]["recall_per_type"])
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"placement-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
