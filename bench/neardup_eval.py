"""Image near-duplicate evaluation on a tuning and a reporting split: real `thresher run`s, or a fast in-process mode.

    PYTHONPATH=. python bench/neardup_eval.py [--split report|tune] [--methods pdq,pdq_regions,pdq_verify]
                                              [--fast] [--set KEY=VALUE] [--search-cost] [--figure]

The set (``build_set``, from ``support.evalset``) is one split's originals, each with its own edit family, and
low-texture negatives. Originals: the bundled photos (scikit-image, matplotlib; ``pipelines.cli.corpus``) whose name
falls in the split by a stable hash, and ``--per-type`` generated originals of each hard-to-hash type (flat colours
with marks, soft gradients, line art and icons, pastel landscapes, text slides, products on white). Edits: the
tuning split keeps the Copydays-style set (resize 50%, JPEG q20, crops keeping 80%/60% centred and off-centre,
flip, grey, brightness x1.3, contrast x0.7, blur 2, banner, stretch x1.3, rotation 5 degrees); the reporting split
draws OTHER parameters per original (resize 30-70%, JPEG q15-40, an 80% off-centre crop, a 60% crop anywhere, a
50-90% crop anywhere, rotation 3-10 degrees either way, contrast 0.5-0.8, brightness 0.7-1.4, gamma 0.6-1.6,
grey, flip, blur 1-3, another banner): ``support.evalset.REPORT_RANGES``. Settings are chosen on ``tune`` and
reported on ``report``. Negatives: at least 300 distinct low-texture designs (flat colours, gradients, stripes,
marks, icons, words and slides, products on white, pastel scenes) with recolour twins (one design in two colours:
a pair between them is false, and counted apart), bundled logos on white, and far-apart crops of four texture
photos. Metrics: ``bench/neardup_metrics.py`` (pair and cluster precision and recall, per edit and image type).

Two modes. The default serves the set on a loopback HTTP server (``pipelines.cli.demo.serve_files``) and curates it
with ``pipelines.run.driver.run`` (what ``thresher run`` calls; partitioned dedup, the manifest's ``cluster_id``), once
per method on one run directory (ingest shared, score and dedup redone): reported figures come from this mode.
``--fast`` runs the same ingest, decode and descriptor stages and the one-process dedup phase in this process
(``bench/neardup_fast.py``), with no Ray and no HTTP: for sweeping a setting in a minute. ``--set`` overrides
(``--set dedup.pdq.min_quality=40``) apply to every method. Descriptor cost per image is timed in this process on
the staged set in both modes (``bench.neardup_fast.descriptor_cost``: CPU time of the stage callables on 128
decoded images, least of 3 passes; phase wall time on a loaded machine is not precise), and ``--search-cost``
times the one-process PDQ finder at three sizes and extrapolates to 1M (``bench.neardup_fast.search_cost``).

Other helpers add a method by adding its dedup overrides to ``METHODS``. Prints tables, writes
bench/results/neardup-<split>-<time>.json and, with ``--figure``, bench/figures/neardup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.neardup_fast import descriptor_cost, staged_cached  # noqa: E402
from bench.neardup_metrics import Label, evaluate  # noqa: E402
from dedup.config import KIND_OF_DETECTOR  # noqa: E402
from manifests.layout import RunLayout  # noqa: E402
from manifests.schema import DupKind  # noqa: E402
from pipelines.cli.corpus import jpeg, photo_dirs, png  # noqa: E402
from support.evalset import (EDIT_SETS, SCENE_PHOTOS, bundled_graphics, bundled_photos,  # noqa: E402
                             low_texture_negatives, similar_scenes, split_originals)

OFF = {"enabled": False}  # verification (with its keypoints detector), on with PDQ by default
METHODS = {
    "phash": {"phash": {"enabled": True}},
    "pdq": {"pdq": {"enabled": True, "regions": [], "verify": OFF}},
    # PDQ + regions, with the stretch, the layout detector and the colour gate: the default until verification
    # came with PDQ (the "default" row).
    "pdq_regions": {"pdq": {"enabled": True, "verify": OFF}},
    # Issue 24's additions one at a time: PDQ + regions as before all three, then each alone.
    "pdq_before": {"pdq": {"enabled": True, "stretch_max_gain": 1, "min_colour_overlap": 0, "verify": OFF},
                   "layout": OFF},
    "pdq_stretch": {"pdq": {"enabled": True, "min_colour_overlap": 0, "verify": OFF}, "layout": OFF},
    "pdq_layout": {"pdq": {"enabled": True, "stretch_max_gain": 1, "min_colour_overlap": 0, "verify": OFF}},
    "pdq_gate": {"pdq": {"enabled": True, "stretch_max_gain": 1, "verify": OFF}, "layout": OFF},
    # pdq_regions but the layout detector's photometric match (dedup.layout.tone): what that match adds.
    "pdq_no_tone": {"pdq": {"enabled": True, "verify": OFF}, "layout": {"tone": OFF}},
    # The default: verification with the keypoints detector (off-centre crops, small rotations); the demo's.
    "pdq_keypoints": {"pdq": {"enabled": True}},
    # Pairs beyond the PDQ threshold, up to distance 80, count when ORB + RANSAC verifies them (no keypoints).
    "pdq_verify": {"pdq": {"enabled": True, "verify": {"keypoints": OFF}}},
    # Every pair verified, the near ones too: what verification removes, and what it loses.
    "pdq_verify_all": {"pdq": {"enabled": True, "verify": {"verify_all": True, "keypoints": OFF}}},
}
IMAGE_DETECTORS = {d for d, kind in KIND_OF_DETECTOR.items() if kind == DupKind.IMAGE}


def build_set(split: str, seed: int = 0, per_type: int = 8, negatives: int = 300, max_photos: int | None = None,
              edits: str | None = None) -> tuple[dict[str, bytes], dict[str, Label]]:
    """(URL path -> served bytes, URL path -> Label) of one split; each negative is a group of its own. ``edits``:
    another split's edit family on this split's originals (the reporting split's parameter ranges on the tuning
    originals: tuning for those ranges without the reporting originals)."""
    files, labels = {}, {}
    originals = split_originals(split, seed, per_type)
    photos = [n for n, (_, kind) in originals.items() if kind == "photo"]
    drop = set(photos[max_photos:]) if max_photos is not None else set()
    rng = random.Random(f"{seed}:{split}:edits" if edits in (None, split) else f"{seed}:{split}:{edits}-edits")
    for name, (img, kind) in originals.items():
        if name in drop:
            continue
        path = f"/o/{name}/original.jpg"
        files[path], labels[path] = jpeg(img, 90), Label(name, "original", kind)
        for edit, e in EDIT_SETS[edits or split](img, rng).items():
            path = f"/o/{name}/{edit}.jpg"
            files[path], labels[path] = jpeg(e.image, e.quality), Label(name, edit, kind)
    for name, neg in low_texture_negatives(seed, negatives).items():
        path = f"/n/{name}.png"
        files[path], labels[path] = png(neg.image), Label(f"neg:{name}", "negative", f"neg_{neg.kind}", neg.design)
    photos_all = bundled_photos()
    scenes = similar_scenes({n: photos_all[n] for n in SCENE_PHOTOS if n in photos_all})
    graphics = {f"graphic_{n}": _on_white(p) for n, p in bundled_graphics(photo_dirs()).items()}
    for kind, images in (("scene", scenes), ("graphic", graphics)):
        for name, img in images.items():
            path = f"/n/{name}.png"
            files[path], labels[path] = png(img), Label(f"neg:{name}", "negative", f"neg_{kind}")
    return files, labels


def _on_white(path: Path):
    from PIL import Image

    with Image.open(path) as img:
        rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def run_config(url_list: Path, run_dir: Path, dedup: dict) -> dict:
    stages = {name: {"num_cpus": 0.25} for name in ("pixel_hash", "phash", "pdq", "layout")}
    return {"output_dir": str(run_dir),
            "input": {"kind": "url_list", "path": str(url_list), "rows_per_shard": 200},
            "crawl": {"allow_private_addresses": True, "retries": 1, "image_size": 256, "resize_mode": "border"},
            "dedup": {"exact": {"enabled": True}, **dedup},
            "resources": {"ingest": {"concurrency": 2}, "export": {"concurrency": 2}, "stages": stages},
            "ray": {"num_cpus": 2}}


def image_pairs(pairs: pl.DataFrame, config) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(image pairs at their detectors' thresholds, exact pairs) of a pairs table with url_a/url_b."""
    limit = pl.col("detector").replace_strict(config.dedup.thresholds(), return_dtype=pl.Float64)
    at = pairs.filter(pl.col("similarity").cast(pl.Float64) >= limit - 1e-6)
    return (at.filter(pl.col("detector").is_in(sorted(IMAGE_DETECTORS))),
            at.filter(pl.col("detector").is_in(["sha256", "pixel_hash"])))


def real_outputs(run_dir: Path, base_url: str) -> tuple[pl.DataFrame, dict[str, str | None]]:
    """(pairs with url_a/url_b as URL paths, URL path -> cluster_id) of a finished run."""
    layout = RunLayout.at(run_dir)
    manifest = (pl.read_parquet(layout.manifest_files(), columns=["sample_id", "url", "cluster_id"])
                .with_columns(pl.col("url").str.strip_prefix(base_url)))
    pairs = pl.concat([pl.read_parquet(f) for f in layout.pairs_files()])
    ids = manifest.select("sample_id", "url")
    for side in ("a", "b"):
        pairs = pairs.join(ids.rename({"sample_id": f"sample_{side}", "url": f"url_{side}"}), on=f"sample_{side}")
    return pairs, dict(manifest.select("url", "cluster_id").iter_rows())


def method_result(pairs: pl.DataFrame, clusters: dict, labels: dict[str, Label], split: str, config,
                  files: dict[str, bytes]) -> dict:
    image, exact = image_pairs(pairs, config)
    result = evaluate(image, clusters, labels, split)
    exact_false = sum(labels[a].group != labels[b].group for a, b in exact.select("url_a", "url_b").iter_rows())
    cost = descriptor_cost(config, staged_cached(tuple(files.items()), config.crawl.image_size,
                                                 config.crawl.resize_mode))
    return {**result, "exact_pairs": exact.height, "exact_false": exact_false, "descriptor_cpu_ms_per_image": cost,
            "descriptor_cpu_ms_total": round(sum(v for k, v in cost.items() if k != "decode"), 3)}


def run_fast(files: dict, labels: dict, split: str, methods: list[str], overrides: list[str], work: Path) -> dict:
    from bench.neardup_fast import fast_run
    from pipelines.config import build_config

    results = {}
    for method in methods:
        config = build_config(run_config(work / "urls.parquet", work / "run", METHODS[method]), overrides)
        start = time.perf_counter()
        pairs, clusters, _ = fast_run(config, files)
        results[method] = {**method_result(pairs, clusters, labels, split, config, files),
                           "wall_s": round(time.perf_counter() - start, 1)}
    return results


def run_real(files: dict, labels: dict, split: str, methods: list[str], overrides: list[str], work: Path) -> dict:
    from pipelines.cli.demo import serve_files, write_url_list
    from pipelines.config import build_config
    from pipelines.run.driver import run
    from pipelines.run.runtime import init_ray

    results = {}
    with serve_files(files) as base_url:
        rows = [SimpleNamespace(path=p, caption=f"image {i}", kind=labels[p].edit) for i, p in enumerate(files)]
        url_list = write_url_list(rows, base_url, work / "urls.parquet")
        for method in methods:
            config = build_config(run_config(url_list, work / "run", METHODS[method]), overrides)
            init_ray(config.ray)
            start = time.perf_counter()
            run(config, redo=("score", "dedup"))
            wall = round(time.perf_counter() - start, 1)
            phases = json.loads(RunLayout.at(work / "run").run_json.read_text())["phases"]
            pairs, clusters = real_outputs(work / "run", base_url)
            results[method] = {**method_result(pairs, clusters, labels, split, config, files), "wall_s": wall,
                               **{f"{p}_s": phases.get(p, {}).get("wall_s") for p in ("score", "dedup")}}
    return results


SUMMARY = ["pairs", "false_pairs", "precision", "precision_recolours_excluded", "negative_false_pairs",
           "recolour_false_pairs", "recall_main", "recall_photometric", "recall_hard_main", "recall_photo_main",
           "recall_geometry", "cluster_precision", "cluster_recall", "mixed_clusters", "largest_cluster",
           "exact_false", "descriptor_cpu_ms_total"]


def print_table(results: dict) -> None:
    short = {c: c.replace("recall_", "R_").replace("precision_recolours_excluded", "P_no_recol")
             .replace("precision", "P").replace("descriptor_cpu_ms_total", "cpu_ms/img").replace("false_pairs", "false")
             .replace("cluster_", "cl_") for c in SUMMARY}
    print(f"{'method':<15}" + "".join(f"{short[c][:11]:>12}" for c in SUMMARY))
    for name, r in results.items():
        print(f"{name:<15}" + "".join(f"{r[c]!s:>12}" for c in SUMMARY))
    for key, title in (("recall_per_edit", "recall per edit"), ("recall_per_type", "recall (main edits) per type")):
        cols = list(next(iter(results.values()))[key])
        print(f"\n{title}\n{'method':<15}" + "".join(f"{c[:12]:>13}" for c in cols))
        for name, r in results.items():
            print(f"{name:<15}" + "".join(f"{r[key][c] if r[key][c] is not None else '-':>13}" for c in cols))
    for name, r in results.items():
        print(f"\nfalse pairs of {name} ({len(r['false'])}), mixed clusters {r['mixed_clusters']}:")
        for f in r["false"][:25]:
            recolour = "  (recolour)" if f["recolour"] else ""
            print(f"  {f['similarity']:.3f} {f['detector']:<13} {f['a']}  {f['b']}{recolour}")
        for m in r["mixed"][:5]:
            print(f"  cluster of {m['size']}: {m['groups']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("tune", "report"), default="report")
    parser.add_argument("--methods", default="pdq,pdq_regions,pdq_verify")
    parser.add_argument("--fast", action="store_true", help="in-process ingest/score/dedup: no Ray, no HTTP")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="a config override, every method")
    parser.add_argument("--per-type", type=int, default=8, help="generated originals of each hard type")
    parser.add_argument("--negatives", type=int, default=300, help="distinct low-texture negatives (recolours extra)")
    parser.add_argument("--photos", type=int, default=None, help="at most this many photo originals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search-cost", action="store_true", help="also time the PDQ finder and extrapolate to 1M")
    parser.add_argument("--figure", action="store_true", help="also write bench/figures/neardup.json")
    parser.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    if args.figure and args.fast:
        parser.error("--figure records real runs only: drop --fast (fast mode is for choosing settings)")

    files, labels = build_set(args.split, args.seed, args.per_type, args.negatives, args.photos)
    work = Path(args.out or tempfile.mkdtemp(prefix="neardup-"))
    work.mkdir(parents=True, exist_ok=True)
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; METHODS has {sorted(METHODS)}")
    loads = [os.getloadavg()[0]]
    results = (run_fast if args.fast else run_real)(files, labels, args.split, methods, args.overrides, work)
    loads.append(os.getloadavg()[0])
    n_orig = sum(lab.edit == "original" for lab in labels.values())
    per_type = Counter(lab.kind for lab in labels.values() if lab.edit == "original")
    recolours = sum(lab.design is not None and lab.group != f"neg:{lab.design}" for lab in labels.values())
    print(f"\nsplit {args.split} ({'fast, in-process' if args.fast else 'real runs'}): {len(files)} images, "
          f"{n_orig} originals ({dict(sorted(per_type.items()))}), "
          f"{sum(lab.edit == 'negative' for lab in labels.values())} negatives ({recolours} recolours)\n")
    print_table(results)
    record = {"split": args.split, "mode": "fast" if args.fast else "real", "images": len(files), "originals": n_orig,
              "overrides": args.overrides, "methods": results}
    if args.search_cost:
        record["search_cost"] = search_cost_of(args, files, work)
        print(f"\nsearch cost: {json.dumps(record['search_cost'])}")
    out = Path(__file__).resolve().parent / "results" / f"neardup-{args.split}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"\nwrote {out}")
    if args.figure:
        from bench.machine import figure_record, write_figure

        command = "PYTHONPATH=. python bench/neardup_eval.py " + " ".join(sys.argv[1:])
        slim = {m: {k: v for k, v in r.items() if k not in ("false", "missed", "mixed")} for m, r in results.items()}
        print("written", write_figure("neardup", {**figure_record(command, loads), **record, "methods": slim}))


def search_cost_of(args, files: dict, work: Path) -> dict:
    from bench.neardup_fast import score, search_cost
    from pipelines.config import build_config

    config = build_config(run_config(work / "urls.parquet", work / "run", METHODS["pdq_regions"]), args.overrides)
    table, _ = score(config, staged_cached(tuple(files.items()), config.crawl.image_size, config.crawl.resize_mode))
    return search_cost(config, table)


if __name__ == "__main__":
    main()
