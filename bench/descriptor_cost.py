"""Descriptor cost per image of the PDQ stage before and after issue 24's additions, on the same decoded images.

    PYTHONPATH=. python bench/descriptor_cost.py [--split report] [--repeats 5]

The images are one split's originals and edits (``support.evalset``: bundled photos and hard-to-hash originals),
JPEG-encoded and decoded once to their content region, as the score phase's decode stage does. Each stage callable
runs on that prepared batch (no decode timed): ``PdqHasher`` with the luminance stretch off (PDQ + regions before),
with it on (the default), ``LayoutHasher``, and the colour signature of the PDQ colour gate
(``dedup.pdq.colour_signature``, which ``PdqHasher`` computes with its codes: the PDQ rows before it are the
hasher's time less the signature's). The four are timed in turn ``--repeats`` times, so load on a
shared machine hits them alike; the median of each is reported, and the cost relative to PDQ + regions before.
Prints a table and writes bench/results/descriptor-cost-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dedup.config import LayoutConfig, PdqConfig  # noqa: E402
from dedup.layout import LayoutHasher  # noqa: E402
from dedup.pdq import PdqHasher, colour_signature  # noqa: E402
from manifests import schema as col  # noqa: E402
from manifests.images import CONTENT_RGB, prepare  # noqa: E402
from pipelines.cli.corpus import jpeg  # noqa: E402
from support.evalset import EDIT_SETS, split_originals  # noqa: E402


def decoded_batch(split: str) -> dict[str, np.ndarray]:
    blobs, rng = [], random.Random(f"0:{split}:edits")
    for img, _ in split_originals(split).values():
        blobs.append(jpeg(img, 90))
        blobs += [jpeg(edit.image.convert("RGB"), edit.quality) for edit in EDIT_SETS[split](img, rng).values()]
    ids = np.array([f"{i:05d}" for i in range(len(blobs))], dtype=object)
    return prepare({col.SAMPLE_ID: ids, col.IMAGE: np.array(blobs, dtype=object)}, (CONTENT_RGB,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "report"), default="report")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batch = decoded_batch(args.split)
    n = len(batch[col.SAMPLE_ID])
    pdq = PdqConfig(enabled=True, verify={"enabled": False})
    stages = {"pdq_before": PdqHasher(PdqConfig(enabled=True, stretch_max_gain=1, verify={"enabled": False})),
              "pdq_stretch": PdqHasher(pdq),
              "pdq_orb": PdqHasher(PdqConfig(enabled=True)),
              "layout": LayoutHasher(LayoutConfig()),
              "colour": lambda b: [colour_signature(rgb, pdq.colour_min_chroma) for rgb in b[CONTENT_RGB.column]]}
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(args.repeats):
        for name, stage in stages.items():
            start = time.perf_counter()
            stage(dict(batch))
            times[name].append((time.perf_counter() - start) * 1e3 / n)
    ms = {name: round(statistics.median(t), 3) for name, t in times.items()}
    base = ms["pdq_before"] - ms["colour"]  # PdqHasher computes the colour signature whatever its settings
    stretch = ms["pdq_stretch"] - ms["colour"]
    rows = {"PDQ + regions (before)": base, "PDQ + regions, stretched": stretch,
            "PDQ + regions + layout": base + ms["layout"], "stretched + layout": stretch + ms["layout"],
            "stretched + layout + colour": ms["pdq_stretch"] + ms["layout"],
            "+ ORB keypoints and thumbnails (default)": ms["pdq_orb"] + ms["layout"]}
    print(f"{n} images ({args.split} split), median of {args.repeats} interleaved runs\n")
    print(f"{'descriptors':<40}{'ms/image':>10}{'x before':>10}")
    for name, value in rows.items():
        print(f"{name:<40}{value:>10.3f}{value / base:>10.2f}")
    out = Path(__file__).resolve().parent / "results" / f"descriptor-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"split": args.split, "images": n, "repeats": args.repeats, "stage_ms": ms,
                               "ms_per_image": rows, "ratio": {k: round(v / base, 3) for k, v in rows.items()}},
                              indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
