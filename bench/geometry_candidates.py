"""Can a fixed-size candidate search reach crops and rotations? Bag-of-words over ORB keypoints, k nearest images.

    PYTHONPATH=. python bench/geometry_candidates.py [--words 512] [--k 5,10,20] [--negatives 300]

The keypoints detector (``dedup.keypoints``) finds candidates by shared keypoint keys. When this was written its
candidates were thought to grow with the corpus (a line through 1.2k images gave ~15,000 per image at 1M); they are
now capped per image and bench/keypoint_scale.py measures their reach in a growing background. This measures the
alternative whose cost does not grow with the corpus: each image's ORB keypoints (the
``orb_features`` the score phase stores) quantised to a codebook of ``--words`` visual words (k-means on the bits,
fitted on the tuning split only), a tf-idf histogram (square-rooted, L2-normalised), and each image's ``k``
nearest by cosine. It reports, per split, the share of (original, geometric edit) pairs among the candidates
(either side's k nearest), per edit and per image type, then verifies the k=10 candidates with the keypoints
detector's own check (``dedup.keypoints.copy_score``) and reports recall, false pairs and precision. The
reporting split uses the tuning split's codebook and idf. Prints a table, writes bench/results/geomcand-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.geometry_eval import CONFIG, GEOMETRIC, build  # noqa: E402
from dedup.keypoints import copy_score  # noqa: E402
from dedup.verify import orb_features, parse_features  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def features(images: list[dict]) -> list[bytes]:
    return [orb_features(im["rgb"], CONFIG.verify.features) for im in images]


def bits(value: bytes) -> np.ndarray:
    """(n, 256) float32 0/1 of the image's own keypoints (the mirror's are PDQ's business)."""
    plain, _ = parse_features(value)
    return np.unpackbits(plain["desc"], axis=1).astype(np.float32)


def codebook(values: list[bytes], words: int, sample: int = 80_000, seed: int = 0) -> faiss.IndexFlatL2:
    every = np.concatenate([bits(v) for v in values if len(parse_features(v)[0])])
    rng = np.random.default_rng(seed)
    chosen = every[rng.choice(len(every), min(sample, len(every)), replace=False)]
    kmeans = faiss.Kmeans(256, words, niter=20, seed=seed, verbose=False)
    kmeans.train(chosen)
    index = faiss.IndexFlatL2(256)
    index.add(kmeans.centroids)
    return index


def histograms(values: list[bytes], book: faiss.IndexFlatL2) -> np.ndarray:
    counts = np.zeros((len(values), book.ntotal), dtype=np.float32)
    for i, value in enumerate(values):
        b = bits(value)
        if len(b):
            _, word = book.search(b, 1)
            np.add.at(counts[i], word[:, 0], 1.0)
    return counts


def weighted(counts: np.ndarray, idf: np.ndarray) -> np.ndarray:
    vectors = np.sqrt(counts * idf[None, :])
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def nearest(vectors: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _, found = index.search(vectors, k + 1)
    return found[:, 1:]


def candidate_pairs(found: np.ndarray, k: int) -> set[tuple[int, int]]:
    return {(min(i, int(j)), max(i, int(j))) for i, row in enumerate(found) for j in row[:k] if j >= 0 and j != i}


def true_pairs(images: list[dict]) -> dict[tuple[int, int], tuple[str, str]]:
    """(original, geometric edit) position pairs, a < b -> (edit, image type)."""
    originals = {im["group"]: i for i, im in enumerate(images) if im["edit"] == "original"}
    wanted = {}
    for i, im in enumerate(images):
        if im["edit"] in GEOMETRIC:
            o = originals[im["group"]]
            wanted[(min(o, i), max(o, i))] = (im["edit"], im["type"])
    return wanted


def recall(found: set, wanted: dict) -> dict:
    by_edit, by_type = defaultdict(list), defaultdict(list)
    for pair, (edit, kind) in wanted.items():
        by_edit[edit].append(pair in found)
        by_type[kind].append(pair in found)
    return {"all": round(float(np.mean([pair in found for pair in wanted])), 3),
            "edit": {e: round(float(np.mean(v)), 3) for e, v in sorted(by_edit.items())},
            "type": {t: round(float(np.mean(v)), 3) for t, v in sorted(by_type.items())}}


def kind(image: dict) -> str:
    """An image's type; a hard negative's is its generator's name (neg_product, neg_icon, ...)."""
    if image["edit"] != "negative":
        return image["type"]
    return re.sub(r"(_\d+)+(_recolour)?$", "", image["name"].removeprefix("neg/"))


def verified(candidates: set, values: list[bytes], images: list[dict]) -> tuple[set, list, dict]:
    kept = {(a, b) for a, b in candidates if copy_score(values[a], values[b], CONFIG.verify) > 0}
    false = sorted((a, b) for a, b in kept if images[a]["group"] != images[b]["group"])
    by_kind = Counter(" + ".join(sorted((kind(images[a]), kind(images[b])))) for a, b in false)
    return kept, [(images[a]["name"], images[b]["name"]) for a, b in false], dict(by_kind.most_common())


def run_split(split: str, negatives: int, ks: list[int], words: int, book, idf) -> tuple[dict, object, object]:
    images = build(split, negatives)
    start = time.perf_counter()
    values = features(images)
    if book is None:
        book = codebook(values, words)
    counts = histograms(values, book)
    spent = (time.perf_counter() - start) / len(images)
    if idf is None:
        idf = np.log(len(counts) / np.maximum((counts > 0).sum(axis=0), 1)).astype(np.float32)
    found = nearest(weighted(counts, idf), max(ks))
    wanted = true_pairs(images)
    out = {"images": len(images), "geometric_pairs": len(wanted), "s_per_image_orb_and_words": round(spent, 5),
           "candidates": {}}
    for k in ks:
        pairs = candidate_pairs(found, k)
        out["candidates"][k] = {"per_image": round(len(pairs) / len(images), 2), "recall": recall(pairs, wanted)}
    start = time.perf_counter()
    pairs = candidate_pairs(found, 10)
    kept, false, by_kind = verified(pairs, values, images)
    out["verified_k10"] = {"pairs": len(kept), "false_pairs": len(false), "false_by_kind": by_kind,
                           "precision": round(1 - len(false) / max(1, len(kept)), 4),
                           "recall": recall(kept, wanted), "false": false[:15],
                           "verify_s": round(time.perf_counter() - start, 1)}
    return out, book, idf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=512)
    parser.add_argument("--k", default="5,10,20")
    parser.add_argument("--negatives", type=int, default=300)
    args = parser.parse_args()
    ks = [int(k) for k in args.k.split(",")]
    result, book, idf = {}, None, None
    for split in ("tune", "report"):
        result[split], book, idf = run_split(split, args.negatives, ks, args.words, book, idf)
        r = result[split]
        print(f"== {split}: {r['images']} images, {r['geometric_pairs']} geometric pairs, "
              f"{r['s_per_image_orb_and_words']} s/image")
        for k, c in r["candidates"].items():
            print(f"  k={k:<3} candidates/image {c['per_image']:>6}  recall {c['recall']['all']}  "
                  f"{c['recall']['edit']}  {c['recall']['type']}")
        v = r["verified_k10"]
        print(f"  verified k=10: pairs {v['pairs']} false {v['false_pairs']} P {v['precision']} "
              f"recall {v['recall']['all']} {v['recall']['edit']} {v['recall']['type']} ({v['verify_s']} s)")
        print(f"  false pairs by kind: {v['false_by_kind']}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"geomcand-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"command": " ".join(sys.argv), "words": args.words, **result}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
