"""The PDQ colour gate's threshold from measurements: colour overlap of true pairs vs recolour twins.

    PYTHONPATH=. python bench/colour_gate.py [--split tune] [--twin-seeds 0,1]

PDQ hashes luminance, so one design in two colours (``support.evalset.recolour``) hashes alike, and
``dedup.pdq.compatible`` refuses a PDQ pair whose colours differ. This prints, for one split of
``bench/neardup_eval.py``'s set (staged and decoded to the content region as a run does), the colour overlap
(``dedup.pdq.colour_overlap``) and the lower mean chroma of

- every pair of one original's copies (crops, photometric edits, banner, grey ...) within PDQ reach (best region
  distance <= ``verify.max_distance``, as the finders search it), and
- every recolour twin among the low-texture negatives of each ``--twin-seeds`` seed. ``neardup_eval`` uses seed 0
  on both splits, so its twins are not held out; seed 1's are designs no split uses.

and, for thresholds on both, how many true pairs the gate refuses and how many twins it lets through. Writes
bench/results/colour-gate-<split>-<time>.json.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.neardup_eval import build_set  # noqa: E402
from bench.neardup_fast import staged_cached  # noqa: E402
from bench.neardup_metrics import Label  # noqa: E402
from dedup.config import PdqConfig  # noqa: E402
from dedup.pdq import colour_overlap, colour_signature, region_codes, stretched, variants  # noqa: E402
from manifests import schema as col  # noqa: E402
from manifests.images import CONTENT_RGB, prepare  # noqa: E402
from pipelines.cli.corpus import png  # noqa: E402
from support.evalset import low_texture_negatives  # noqa: E402

OVERLAPS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
CHROMAS = (0.0, 0.005, 0.01, 0.05, 0.1)


def content(files: dict[str, bytes]) -> dict[str, np.ndarray]:
    """URL path -> the content region as the score phase sees it (crawled at 256, border mode)."""
    batch = staged_cached(tuple(files.items()), 256, "border")
    out = prepare({k: batch[k] for k in (col.SAMPLE_ID, col.IMAGE, col.CONTENT_BOX)}, (CONTENT_RGB,))
    return dict(zip(out[col.SAMPLE_ID], out[CONTENT_RGB.column]))


def pdq_distance(codes: dict[str, tuple], a: str, b: str) -> int:
    """The smallest Hamming distance of a's queried codes to b's usable ones, either way round (999: none)."""
    best = 999
    for x, y in ((a, b), (b, a)):
        bits_x, _, queried_x = codes[x]
        bits_y, usable_y, _ = codes[y]
        if queried_x.any() and usable_y.any():
            best = min(best, int((bits_x[queried_x][:, None] != bits_y[usable_y][None]).sum(-1).min()))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "report"), default="tune")
    parser.add_argument("--twin-seeds", default="0,1")
    args = parser.parse_args()
    config = PdqConfig(enabled=True)
    files, labels = build_set(args.split)
    files = {p: d for p, d in files.items() if labels[p].edit != "negative"}  # the twins are added below
    for seed in (int(s) for s in args.twin_seeds.split(",")):
        negatives = low_texture_negatives(seed)
        twinned = {neg.design for name, neg in negatives.items() if name != neg.design}
        for name, neg in negatives.items():
            if neg.design not in twinned:
                continue
            path = f"/twin{seed}/{name}.png"
            files[path], labels[path] = png(neg.image), Label(f"neg{seed}:{name}", "negative", f"neg_{neg.kind}",
                                                               f"{seed}:{neg.design}")
    rgb = content(files)
    signature = {p: colour_signature(r, config.colour_min_chroma) for p, r in rgb.items()}
    codes = {}
    for p, r in rgb.items():
        full, quality, (crops, crop_quality) = region_codes(stretched(r, config), config)
        usable = np.r_[[quality] * variants(config), crop_quality] >= config.min_quality
        queried = usable.copy()
        queried[1:variants(config)] = False
        codes[p] = (np.unpackbits(np.concatenate([full, crops]), axis=1).astype(bool), usable, queried)
    groups: dict[str, list[str]] = defaultdict(list)
    for p, label in labels.items():
        if p in rgb and (label.edit != "negative" or p.startswith("/twin")):
            groups[label.design if label.edit == "negative" else label.group].append(p)
    rows = []
    for members in groups.values():
        for a, b in itertools.combinations(sorted(members), 2):
            overlap, chroma = colour_overlap(signature[a][None], signature[b][None])
            twin = labels[a].edit == "negative"
            rows.append({"twin": twin, "seed": labels[a].design.split(":")[0] if twin else None,
                         "pdq": pdq_distance(codes, a, b), "overlap": round(float(overlap[0]), 4),
                         "chroma": round(float(chroma[0]), 4), "kind": labels[a].kind,
                         "edits": None if twin else f"{labels[a].edit}-{labels[b].edit}", "a": a, "b": b})
    reach = config.verify.max_distance
    true = [r for r in rows if not r["twin"] and r["pdq"] <= reach]
    twins = [r for r in rows if r["twin"] and r["pdq"] <= reach]
    print(f"split {args.split}: {len(true)} true pairs and {len(twins)} recolour twins within PDQ distance {reach}"
          f" ({sum(r['pdq'] <= 31 for r in true)} and {sum(r['pdq'] <= 31 for r in twins)} within 31)\n")
    print("recolour twins (seed: design), by overlap:")
    for r in sorted(twins, key=lambda r: -r["overlap"]):
        print(f"  overlap {r['overlap']:.3f}  chroma {r['chroma']:6.3f}  pdq {r['pdq']:3d}  {r['kind']:<13} {r['a']}")
    print("\nthe lowest-overlap true pairs with chroma >= 0.005 (the rest are grey or overlap more):")
    for r in sorted((r for r in true if r["chroma"] >= 0.005), key=lambda r: r["overlap"])[:12]:
        print(f"  overlap {r['overlap']:.3f}  chroma {r['chroma']:6.3f}  pdq {r['pdq']:3d}  {r['kind']:<16} {r['a']} "
              f"{r['edits']}")
    gated = np.array([r["overlap"] for r in true if r["chroma"] >= 0.005])
    print(f"\ntrue pairs with colour (chroma >= 0.005): {len(gated)}; overlap quantiles 0/1/5/50%: "
          f"{np.round(np.quantile(gated, [0, 0.01, 0.05, 0.5]), 3).tolist() if len(gated) else []}")
    sweep = []
    print(f"\n{'min overlap':>12}{'achromatic':>12}{'true refused':>14}{'(<=31)':>8}{'twins let':>11}"
          f"{'seed 1':>8}")
    for overlap, chroma in itertools.product(OVERLAPS, CHROMAS):
        def refused(r: dict) -> bool:
            return r["chroma"] >= chroma and r["overlap"] < overlap

        row = {"min_colour_overlap": overlap, "achromatic_chroma": chroma,
               "true_refused": sum(map(refused, true)), "true_refused_31": sum(refused(r) for r in true
                                                                               if r["pdq"] <= 31),
               "twins_passed": sum(not refused(r) for r in twins),
               "twins_passed_seed1": sum(not refused(r) for r in twins if r["seed"] == "1")}
        sweep.append(row)
        print(f"{overlap:>12}{chroma:>12}{row['true_refused']:>14}{row['true_refused_31']:>8}"
              f"{row['twins_passed']:>11}{row['twins_passed_seed1']:>8}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(__file__).resolve().parent / "results" / f"colour-gate-{args.split}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"split": args.split, "twin_seeds": args.twin_seeds, "reach": reach,
                               "pairs": rows, "sweep": sweep}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
