"""Why geometric copies are missed: the first check each (original, crop or rotation) pair fails, per image type.

    PYTHONPATH=. python bench/geometry_misses.py [--split tune|report]

Every (original, geometric edit) pair of a split is verified directly with the keypoints detector's checks
(``dedup.keypoints``: enough ORB keypoints, ``min_inliers`` RANSAC inliers of a similarity, a plausible small
turn, the inliers' spread, then the thumbnails laid over each other, ``verify.max_differing`` and the subject
distance; placement, which judges keypoint-poor pairs first, is left out), against
the edit and against its mirror; the pair counts under the first check that fails on both (or OK). Candidate
search is left out: this is what verification alone can reach. Prints a table, writes
bench/results/geomisses-<split>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.geometry_candidates import RESULTS, features, true_pairs  # noqa: E402
from bench.geometry_eval import CONFIG, build  # noqa: E402
from dedup.keypoints import small_turn, spread  # noqa: E402
from dedup.verify import (feature_size, fit, overlay, parse_features, plausible, subject_distance,  # noqa: E402
                          thumbnails)

CHECKS = ("few keypoints", "inliers", "implausible", "not a similarity", "spread", "pixels", "subject", "OK")


def first_failure(a: bytes, b: bytes) -> str:
    """The furthest check either view of ``b`` (as it is, mirrored) reaches against ``a``: OK when one passes."""
    verify, keys = CONFIG.verify, CONFIG.verify.keypoints
    plain_a, _ = parse_features(a)
    sizes, thumb_a = (feature_size(a), feature_size(b)), thumbnails(a)[0]
    reached = []
    for other, thumb_b in zip(parse_features(b), thumbnails(b)):
        homography, in_a, in_b = fit(plain_a, other, verify.ratio, verify.reprojection_px, 4, similarity=True)
        laid = overlay(thumb_a, thumb_b, homography, sizes) if plausible(homography) else None
        checks = [
            ("few keypoints", min(len(plain_a), len(other)) >= keys.min_inliers),
            ("inliers", len(in_a) >= keys.min_inliers),
            ("implausible", lambda: plausible(homography)),
            ("turned too far", lambda: small_turn(homography, keys)),
            ("spread", lambda: max(spread(plain_a["xy"][in_a], sizes[0]),
                                   spread(other["xy"][in_b], sizes[1])) >= keys.min_spread),
            ("pixels", lambda: laid is not None and laid.differing() <= verify.max_differing),
            ("subject", lambda: subject_distance(laid) <= keys.max_subject_distance)]
        failed = next((name for name, ok in checks if not (ok() if callable(ok) else ok)), "OK")
        reached.append(CHECKS.index(failed))
    return CHECKS[max(reached)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=("tune", "report"), default="tune")
    args = parser.parse_args()
    images = build(args.split, 0)
    values = features(images)
    by_type: dict[str, Counter] = defaultdict(Counter)
    for (a, b), (_, kind) in true_pairs(images).items():
        by_type[kind][first_failure(values[a], values[b])] += 1
    total = sum(by_type.values(), Counter())
    print(f"{args.split}: {sum(total.values())} (original, crop or rotation) pairs, first check failed")
    print(f"{'type':18}" + "".join(f"{c:>17}" for c in CHECKS))
    for kind, counts in sorted(by_type.items()) + [("all", total)]:
        print(f"{kind:18}" + "".join(f"{counts[c]:>17}" for c in CHECKS))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"geomisses-{args.split}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"command": " ".join(sys.argv), "split": args.split,
                                "by_type": {k: dict(v) for k, v in by_type.items()}, "all": dict(total)}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
