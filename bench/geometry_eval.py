"""Crops at any position and small rotations: PDQ, PDQ + verification, the keypoints detector, all together.

    PYTHONPATH=. python bench/geometry_eval.py [--split tune|report|both] [--negatives 300] [--sweep]

In process, no `thresher run`: each split's originals (``support.evalset.split_originals``: bundled photos by
name hash, and hard-to-hash originals) with that split's edits (``EDIT_SETS``: the tuning split's fixed Copydays
edits, the reporting split's crops at random positions 50-90% and rotations 3-10 degrees among others), JPEG
encoded and decoded, plus hard negatives (``low_texture_negatives`` with recolour twins, shapes and logos on
white, far-apart crops of texture photos). Each image is scored as ``dedup.pdq.PdqHasher`` does (PDQ of the
regions, ORB keypoints), then paired by the one-process detectors (``dedup.detectors.pdq_pairs`` with
verification, ``support.dedup_reference.keypoint_pairs``).

A true pair joins two images of one original; every other pair is false (two recolours of one design included).
Recall counts (original, edit) pairs found directly, per edit and per image type. Cost: seconds per image of PDQ +
regions (today's stage with verification off), of ORB keypoints and of keypoint keys, timed on the same decoded
images in this run, as a ratio to PDQ + regions; search cost: key rows, shared-key rows and candidates per image at
this size and at 1M images (chance collisions grow with the corpus, up to the ``max_bucket`` cap). ``--sweep``
re-verifies the tuning split's candidates over min_shared x min_inliers. Prints tables, writes
bench/results/geometry-<time>.json.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dedup import keypoints  # noqa: E402
from dedup.artefacts import SampleIndex  # noqa: E402
from dedup.config import PdqConfig, SearchConfig  # noqa: E402
from dedup.detectors import pdq_pairs  # noqa: E402
from support.dedup_reference import keypoint_pairs  # noqa: E402
from dedup.pdq import pack_row, region_codes, to_hex  # noqa: E402
from dedup.verify import orb_features  # noqa: E402
from manifests import schema as col  # noqa: E402
from manifests.io import write_parquet  # noqa: E402
from pipelines.cli.corpus import jpeg, photo_dirs  # noqa: E402
from support.evalset import (EDIT_SETS, SCENE_PHOTOS, bundled_photos, low_texture_negatives,  # noqa: E402
                             objects_on_white, similar_scenes, split_originals)

CONFIG = PdqConfig(enabled=True, verify={"enabled": True, "keypoints": {"enabled": True}})
GEOMETRIC = ("crop80_off", "crop60_off", "crop60", "crop80", "rot5", "crop60_any", "crop_any", "rot")
ONE_M = 1_000_000


def decoded(img: Image.Image, quality: int) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg(img, quality))) as out:
        return np.asarray(out.convert("RGB"))


def build(split: str, negatives: int, seed: int = 0) -> list[dict]:
    """Every image of a split: name, group (its original, or itself), edit, image type, decoded RGB."""
    rng = random.Random(seed)
    images = []
    for name, (img, kind) in sorted(split_originals(split, seed).items()):
        images.append({"name": f"{name}/original", "group": name, "edit": "original", "type": kind,
                       "rgb": decoded(img, 90)})
        for edit, (variant, quality, _) in EDIT_SETS[split](img, rng).items():
            images.append({"name": f"{name}/{edit}", "group": name, "edit": edit, "type": kind,
                           "rgb": decoded(variant, quality)})
    scenes = similar_scenes({n: img for n, img in bundled_photos().items() if n in SCENE_PHOTOS})
    hard = {**{n: v.image for n, v in low_texture_negatives(seed, negatives).items()},
            **objects_on_white(photo_dirs()), **scenes}
    for name, img in sorted(hard.items()):
        if negatives or not name.startswith("neg_"):
            images.append({"name": f"neg/{name}", "group": f"neg/{name}", "edit": "negative", "type": "negative",
                           "rgb": decoded(img.convert("RGB"), 90)})
    return images


def score(images: list[dict], out: Path) -> tuple[list[Path], SampleIndex, dict]:
    """The score columns PdqHasher writes, and the seconds per image of each part, on the same arrays."""
    config, spent = CONFIG, defaultdict(float)
    rows = defaultdict(list)
    positions = keypoints.table_bits(config.verify.keypoints)
    for i, image in enumerate(images):
        start = time.perf_counter()
        full, quality, (crop_codes, crop_quality) = region_codes(image["rgb"], config)
        spent["pdq_regions"] += time.perf_counter() - start
        start = time.perf_counter()
        features = orb_features(image["rgb"], config.verify.features)
        spent["orb"] += time.perf_counter() - start
        start = time.perf_counter()
        keypoints.image_keys(features, config.verify.keypoints, positions)
        spent["keys"] += time.perf_counter() - start
        rows[col.SAMPLE_ID].append(f"{i:06d}")
        rows[col.PDQ_HASH].append(to_hex(full[0]))
        rows[col.PDQ_QUALITY].append(quality)
        rows[col.PDQ_CODES].append(pack_row(full, crop_codes, crop_quality))
        rows[col.ORB_FEATURES].append(features)
    path = out / "scores.parquet"
    write_parquet(pa.table(dict(rows)), path)
    per_image = {k: v / len(images) for k, v in spent.items()}
    return [path], SampleIndex.of(pl.Series(rows[col.SAMPLE_ID])), per_image


def evaluate(pairs: pl.DataFrame, images: list[dict]) -> dict:
    """Pair precision, false pairs, and recall of (original, edit) pairs per edit and per image type."""
    group = [im["group"] for im in images]
    found = {(int(a), int(b)) for a, b in pairs.select("sample_a", "sample_b").rows()}
    false = sorted((images[a]["name"], images[b]["name"]) for a, b in found if group[a] != group[b])
    originals = {im["group"]: i for i, im in enumerate(images) if im["edit"] == "original"}
    by_edit, by_type = defaultdict(list), defaultdict(list)
    for i, im in enumerate(images):
        if im["edit"] in ("original", "negative"):
            continue
        o = originals[im["group"]]
        hit = (min(o, i), max(o, i)) in found
        by_edit[im["edit"]].append(hit)
        by_type[im["type"]].append(hit)
    return {"pairs": len(found), "false_pairs": len(false),
            "precision": round(1 - len(false) / max(1, len(found)), 4),
            "false_negatives": sum(1 for a, b in false if a.startswith("neg/") and b.startswith("neg/")),
            "recall": {e: round(float(np.mean(v)), 3) for e, v in sorted(by_edit.items())},
            "recall_by_type": {t: round(float(np.mean(v)), 3) for t, v in sorted(by_type.items())},
            "false": false[:20]}


def search_cost(files: list[Path], config: PdqConfig, n: int) -> dict:
    """Key rows, shared-key rows and candidates per image on a quarter, half and all of the split, and a line
    through them to 1M, bounded by what no corpus exceeds: ``max_candidates`` per image, and ``key rows x
    (max_bucket - 1) / 2`` shared rows. A line through 1.2k images is no measurement of 1M (common keys lengthen
    or drop long before): bench/keypoint_scale.py measures inside a real background instead."""
    keys = config.verify.keypoints
    frame = pl.read_parquet(files[0], columns=[col.SAMPLE_ID, col.ORB_FEATURES])
    rows = keypoints.key_rows(frame[col.SAMPLE_ID], frame[col.ORB_FEATURES].to_list(), keys)
    order = np.random.default_rng(0).permutation(n)
    points = []
    for share in (4, 2, 1):
        ids = frame[col.SAMPLE_ID].gather(np.sort(order[:n // share]))
        part = rows.filter(pl.col(col.SAMPLE_ID).is_in(ids.implode()))
        shared = keypoints.shared_keys(part, keys.max_bucket, keys.refine_bits, keys.refine_levels).collect()
        found = keypoints.candidates(shared.lazy(), keys.min_shared).collect()
        points.append((len(ids), shared.height / len(ids), found.height / len(ids)))
    sizes = np.array([p[0] for p in points], float)
    slope_shared = np.polyfit(sizes, [p[1] for p in points], 1)[0]
    slope_cand = np.polyfit(sizes, [p[2] for p in points], 1)[0]
    key_rows = rows.height / n
    cap = key_rows * (keys.max_bucket - 1) / 2  # every key held by max_bucket images: (m - 1) / 2 pair rows each
    return {"images": n, "key_rows_per_image": round(key_rows, 1),
            "shared_rows_per_image": [round(p[1], 2) for p in points],
            "candidates_per_image": [round(p[2], 3) for p in points], "sizes": [p[0] for p in points],
            "shared_rows_per_image_1m": round(min(cap, max(points[-1][1], slope_shared * ONE_M)), 1),
            "shared_rows_per_image_cap": round(cap, 1),
            "candidates_per_image_1m": round(min(keys.max_candidates, max(points[-1][2], slope_cand * ONE_M)), 2)}


def sweep(files: list[Path], index: SampleIndex, images: list[dict]) -> list[dict]:
    out = []
    for min_shared in (3, 6, 10):
        for min_inliers in (10, 12, 16, 20):
            keys = CONFIG.verify.keypoints.model_copy(update={"min_shared": min_shared, "min_inliers": min_inliers})
            config = CONFIG.model_copy(update={"verify": CONFIG.verify.model_copy(update={"keypoints": keys})})
            result = evaluate(keypoint_pairs(config, files, index), images)
            out.append({"min_shared": min_shared, "min_inliers": min_inliers,
                        **{k: result[k] for k in ("pairs", "false_pairs", "precision")},
                        **{e: result["recall"].get(e) for e in GEOMETRIC if e in result["recall"]}})
    return out


def run_split(split: str, negatives: int, do_sweep: bool) -> dict:
    images = build(split, negatives)
    with tempfile.TemporaryDirectory() as tmp:
        files, index, cost = score(images, Path(tmp))
        start = time.perf_counter()
        pdq = pdq_pairs(CONFIG, SearchConfig(use_gpu=False), files, index)
        pdq_s = time.perf_counter() - start
        start = time.perf_counter()
        found = keypoint_pairs(CONFIG, files, index)
        keypoints_s = time.perf_counter() - start
        plain = pdq.filter(pl.col("detector") == "pdq")
        every = pl.concat([pdq, found]).unique(["sample_a", "sample_b"])
        methods = {"pdq_regions": evaluate(plain, images), "pdq_verify": evaluate(pdq, images),
                   "keypoints": evaluate(found, images), "all": evaluate(every, images)}
        result = {"split": split, "images": len(images), "methods": methods,
                  "cost_s_per_image": {k: round(v, 5) for k, v in cost.items()},
                  "cost_ratio_to_pdq_regions": {k: round(v / cost["pdq_regions"], 3) for k, v in cost.items()},
                  "pair_search_s": {"pdq_verify": round(pdq_s, 2), "keypoints": round(keypoints_s, 2)},
                  "search": search_cost(files, CONFIG, len(images))}
        if do_sweep:
            result["sweep"] = sweep(files, index, images)
    return result


def print_split(result: dict) -> None:
    print(f"\n== {result['split']}: {result['images']} images")
    edits = sorted({e for m in result["methods"].values() for e in m["recall"]})
    print(f"{'method':<12} {'pairs':>6} {'false':>6} {'P':>7} " + " ".join(f"{e[:10]:>10}" for e in edits))
    for name, m in result["methods"].items():
        print(f"{name:<12} {m['pairs']:>6} {m['false_pairs']:>6} {m['precision']:>7.4f} "
              + " ".join(f"{m['recall'].get(e, float('nan')):>10.2f}" for e in edits))
    for name, m in result["methods"].items():
        print(f"  {name} recall by type: {m['recall_by_type']}; false: {m['false'][:6]}")
    print("cost s/image:", result["cost_s_per_image"], "ratio to PDQ + regions:", result["cost_ratio_to_pdq_regions"])
    print("pair search s:", result["pair_search_s"], "search:", result["search"])
    for row in result.get("sweep", []):
        print("  sweep", row)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=("tune", "report", "both"), default="both")
    parser.add_argument("--negatives", type=int, default=300)
    parser.add_argument("--sweep", action="store_true", help="re-verify the tuning split over the settings")
    args = parser.parse_args()
    splits = ("tune", "report") if args.split == "both" else (args.split,)
    results = [run_split(s, args.negatives, args.sweep and s == "tune") for s in splits]
    for result in results:
        print_split(result)
    out = Path(__file__).parent / "results" / f"geometry-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"config": CONFIG.verify.model_dump(), "results": results}, indent=1, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
