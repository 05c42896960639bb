"""What palette keys cost the keypoints detector's candidate search, now and extrapolated to 1M images.

    PYTHONPATH=. python bench/palette_cost.py [--split tune|report] [--negatives 300]

Scores one split as ``bench/geometry_eval.py`` does, then measures its search cost (``geometry_eval.search_cost``:
key rows, shared-key rows and candidates per image on a quarter, half and all of the split, extrapolated to 1M
images) twice in this run: with palette keys (today's settings) and without (``placement.below_keypoints`` 0, the
baseline). Prints a table, writes bench/results/palette-cost-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.geometry_eval import CONFIG, build, score, search_cost  # noqa: E402


def without_palette():
    keys = CONFIG.verify.keypoints
    placement = keys.placement.model_copy(update={"below_keypoints": 0})
    verify = CONFIG.verify.model_copy(update={"keypoints": keys.model_copy(update={"placement": placement})})
    return CONFIG.model_copy(update={"verify": verify})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=("tune", "report"), default="tune")
    parser.add_argument("--negatives", type=int, default=300)
    args = parser.parse_args()
    images = build(args.split, args.negatives)
    with tempfile.TemporaryDirectory() as tmp:
        files, _, _ = score(images, Path(tmp))
        costs = {"without palette keys": search_cost(files, without_palette(), len(images)),
                 "with palette keys": search_cost(files, CONFIG, len(images))}
    print(f"{args.split}: {len(images)} images")
    print(f"{'':24}{'key rows':>10}{'candidates':>12}{'cand. 1M':>12}{'shared rows 1M':>16}")
    for name, c in costs.items():
        print(f"{name:24}{c['key_rows_per_image']:>10}{c['candidates_per_image'][-1]:>12}"
              f"{c['candidates_per_image_1m']:>12}{c['shared_rows_per_image_1m']:>16}")
    base, new = costs["without palette keys"], costs["with palette keys"]
    ratios = {k: round(new[k] / base[k], 3) for k in ("key_rows_per_image", "candidates_per_image_1m",
                                                      "shared_rows_per_image_1m")}
    print("ratio with / without:", ratios)
    out = Path(__file__).parent / "results" / f"palette-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(sys.argv), "split": args.split, "costs": costs,
                               "ratio": ratios}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
