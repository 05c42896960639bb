"""Image near-duplicate evaluation: real `thresher run`s over bundled photos, their edits and hard negatives.

    PYTHONPATH=. python bench/neardup_eval.py [--photos 17] [--methods phash,pdq,pdq_regions,pdq_verify] [--sweep]

The set is built at run time: every photo that scikit-image and matplotlib ship (see
``pipelines.corpus.load_photos``) x Copydays-style edits (``support.evalset.copydays_edits``: resize 50%,
JPEG q20, centred crops keeping 80% and 60% of each side (and the same at a random position,
reported apart), flip, greyscale, brightness x1.3,
contrast x0.7, Gaussian blur 2, a text banner over the bottom 15%, horizontal stretch x1.3, rotation 5
degrees), plus hard negatives that share no picture with anything: flat colours, linear and radial
gradients, stripes, words and logos on white, shapes and bundled logos/silhouettes on white, and two
far-apart crops of each of four texture-like photos (brick, grass, gravel, deep field) kept out of
the originals. Everything is served on a loopback HTTP server (``pipelines.demo.serve_files``) and
curated by ``pipelines.run.run`` (what ``thresher run`` calls) with ``border`` resizing, once per
method on one run directory (ingest is shared, score and dedup are redone).

A true pair joins two images of one photo group (original or any edit); every other reported pair is
false. Pair recall counts (original, edit) pairs reported directly. Two negatives are "recolours"
when they are one shape in two colours: such pairs are counted false, and listed so they can be judged.
Prints a table per method and writes bench/results/neardup-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.evalset import copydays_edits, low_texture_set, objects_on_white, similar_scenes  # noqa: E402
from manifests.layout import RunLayout  # noqa: E402
from pipelines.corpus import jpeg, load_photos, photo_dirs, png  # noqa: E402

# More bundled scikit-image pictures beyond the corpus's photos: microscopy, text, a CT phantom (mostly flat), a
# chessboard (a pattern that looks like stripes), a motion-blurred clock.
EXTRA_PHOTOS = ("cell.png", "text.png", "microaneurysms.png", "clock_motion.png", "phantom.png", "chessboard_GRAY.png")
SCENE_PHOTOS = ("brick", "grass", "gravel", "hubble_deep_field")  # negatives only, never originals
HARD_EDITS = ("crop60", "rot5")  # reported apart from the main goal
OFF_CENTRE = ("crop80_off", "crop60_off")  # crops at a random position: beyond the set, reported apart
METHODS = {
    "phash": {"phash": {"enabled": True}},
    "pdq": {"pdq": {"enabled": True, "regions": []}},
    "pdq_regions": {"pdq": {"enabled": True}},
    # Pairs beyond the PDQ threshold, up to distance 80, count when ORB + RANSAC verifies them.
    "pdq_verify": {"pdq": {"enabled": True, "verify": {"enabled": True}}},
    # Every pair verified, the near ones too: what verification removes, and what it loses.
    "pdq_verify_all": {"pdq": {"enabled": True, "verify": {"enabled": True, "verify_all": True}}},
}


def build_set(n_photos: int, seed: int = 0) -> tuple[dict[str, bytes], dict[str, tuple[str, str]]]:
    """(URL path -> served bytes, URL path -> (group, edit)); negatives are their own group."""
    rng = random.Random(seed)
    photos = {name: img for name, (img, _) in sorted(load_photos().items())}
    for name in EXTRA_PHOTOS:
        path = photo_dirs()["skimage"] / name
        if path.exists():
            with Image.open(path) as img:
                photos[Path(name).stem] = img.convert("RGB")
    files, labels = {}, {}
    originals = [n for n in photos if n not in SCENE_PHOTOS][:n_photos]
    for name in originals:
        img = photos[name].copy()
        img.thumbnail((512, 512))
        files[f"/o/{name}/original.jpg"], labels[f"/o/{name}/original.jpg"] = jpeg(img, 90), (name, "original")
        for edit, (variant, quality) in copydays_edits(img, rng).items():
            path = f"/o/{name}/{edit}.jpg"
            files[path], labels[path] = jpeg(variant, quality), (name, edit)
    scenes = similar_scenes({n: photos[n] for n in SCENE_PHOTOS if n in photos})
    for name, img in {**low_texture_set(), **objects_on_white(photo_dirs()), **scenes}.items():
        path = f"/n/{name}.png"
        files[path], labels[path] = png(img), (f"neg:{name}", "negative")
    return files, labels


def run_config(url_list: Path, run_dir: Path, dedup: dict) -> dict:
    stages = {name: {"num_cpus": 0.25} for name in ("pixel_hash", "phash", "pdq")}
    return {"output_dir": str(run_dir),
            "input": {"kind": "url_list", "path": str(url_list), "rows_per_shard": 200},
            "crawl": {"allow_private_addresses": True, "retries": 1, "image_size": 256, "resize_mode": "border"},
            "dedup": {"exact": {"enabled": True}, **dedup},
            "resources": {"ingest": {"concurrency": 2}, "export": {"concurrency": 2}, "stages": stages},
            "ray": {"num_cpus": 2}}


def design(group: str) -> str | None:
    """The shape of a coloured object negative ("object_circle_0" -> "circle"), else None."""
    parts = group.removeprefix("neg:").split("_")
    return parts[1] if group.startswith("neg:object_") else None


def evaluate(pairs: pl.DataFrame, labels: dict[str, tuple[str, str]], threshold: float) -> dict:
    """Pair precision, recall per edit and the false pairs of one detector's pairs at ``threshold``."""
    pairs = pairs.filter(pl.col("similarity") >= threshold - 1e-6)
    true, false, found = 0, [], set()
    for a, b, sim in pairs.select("url_a", "url_b", "similarity").iter_rows():
        (ga, ea), (gb, eb) = labels[a], labels[b]
        if ga == gb:
            true += 1
            found.add((ga, eb if ea == "original" else ea if eb == "original" else None))
        else:
            false.append({"a": a, "b": b, "similarity": round(sim, 4),
                          "recolour": design(ga) is not None and design(ga) == design(gb)})
    edits = sorted({e for _, e in labels.values() if e not in ("original", "negative")})
    groups = sorted({g for g, e in labels.values() if e == "original"})
    per_edit = {e: sum((g, e) in found for g in groups) / len(groups) for e in edits}
    missed = {e: [g for g in groups if (g, e) not in found] for e in edits}
    main = [e for e in edits if e not in HARD_EDITS + OFF_CENTRE]
    precision = true / max(1, true + len(false))
    return {"pairs": true + len(false), "true_pairs": true, "false_pairs": len(false),
            "precision": round(precision, 4),
            "precision_recolours_excluded": round(true / max(1, true + sum(not f["recolour"] for f in false)), 4),
            "recall_main": round(float(np.mean([per_edit[e] for e in main])), 4),
            **{f"recall_{e}": round(per_edit[e], 4) for e in HARD_EDITS + OFF_CENTRE},
            "recall_per_edit": {e: round(v, 4) for e, v in per_edit.items()}, "missed": missed, "false": false}


def pairs_with_urls(run_dir: Path) -> pl.DataFrame:
    manifest = pl.read_parquet(run_dir / "manifest.parquet").select("sample_id", "url")
    pairs = pl.concat([pl.read_parquet(f) for f in RunLayout.at(run_dir).pairs_files()])
    for side in ("a", "b"):
        pairs = pairs.join(manifest.rename({"sample_id": f"sample_{side}", "url": f"url_{side}"}), on=f"sample_{side}")
    return pairs


def method_result(run_dir: Path, labels: dict, base_url: str, method: str, config) -> dict:
    pairs = pairs_with_urls(run_dir).with_columns(pl.col("url_a").str.strip_prefix(base_url),
                                                  pl.col("url_b").str.strip_prefix(base_url))
    thresholds = config.dedup.thresholds()
    image = evaluate(pairs.filter(pl.col("detector").is_in(["phash", "pdq", "pdq_verified"])).filter(
        pl.col("similarity") >= pl.col("detector").replace_strict(thresholds, return_dtype=pl.Float64) - 1e-6),
        labels, 0.0)
    exact = evaluate(pairs.filter(pl.col("detector").is_in(["sha256", "pixels"])), labels, 1.0)
    manifest = pl.read_parquet(run_dir / "manifest.parquet")
    quality = manifest["pdq_quality"] if "pdq_quality" in manifest.columns else None
    return {**image, "exact_pairs": exact["pairs"], "exact_false": exact["false_pairs"],
            "rows": manifest.height, "kept": int(manifest["keep"].sum()),
            "pdq_quality_null": None if quality is None else int(quality.null_count())}


def sweep(run_dir: Path, labels: dict, base_url: str, config) -> list[dict]:
    """PDQ + regions over (min_quality, Hamming distance), from the last run's score files (no rescoring)."""
    from dedup.artefacts import SampleIndex
    from dedup.detectors import pdq_pairs

    files = sorted((run_dir / "score" / "scores").glob("*.parquet"))
    manifest = pl.read_parquet(run_dir / "manifest.parquet").select("sample_id", "url")
    index = SampleIndex.of(manifest["sample_id"])
    urls = dict(manifest.iter_rows())
    out = []
    for quality in (0, 30, 50, 70):
        pdq = config.dedup.pdq.model_copy(update={"min_quality": quality, "threshold": 1 - 48 / 256,
                                                  "store_threshold": None, "regions": (0.8, 0.64),
                                                  "verify": config.dedup.pdq.verify.model_copy(update={"enabled": False})})
        pairs = pdq_pairs(pdq, config.dedup.search, files, index)
        pairs = pairs.with_columns(pl.col("sample_a").replace_strict(urls).str.strip_prefix(base_url).alias("url_a"),
                                   pl.col("sample_b").replace_strict(urls).str.strip_prefix(base_url).alias("url_b"))
        for distance in (16, 24, 31, 40, 48):
            r = evaluate(pairs, labels, 1 - distance / 256)
            out.append({"min_quality": quality, "distance": distance, **{k: v for k, v in r.items() if k != "false"}})
    return out


def verify_sweep(run_dir: Path, labels: dict, base_url: str, config) -> list[dict]:
    """PDQ + regions + verification over (max_distance, min_inliers), from the last run's score files."""
    from dedup.artefacts import SampleIndex
    from dedup.detectors import pdq_pairs

    files = sorted((run_dir / "score" / "scores").glob("*.parquet"))
    manifest = pl.read_parquet(run_dir / "manifest.parquet").select("sample_id", "url")
    index, urls, out = SampleIndex.of(manifest["sample_id"]), dict(manifest.iter_rows()), []
    for distance in (48, 64, 80):
        for inliers in (12, 16, 20, 30):
            verify = config.dedup.pdq.verify.model_copy(update={"max_distance": distance, "min_inliers": inliers,
                                                                "verify_all": False})
            pdq = config.dedup.pdq.model_copy(update={"verify": verify})
            pairs = pdq_pairs(pdq, config.dedup.search, files, index).with_columns(
                pl.col("sample_a").replace_strict(urls).str.strip_prefix(base_url).alias("url_a"),
                pl.col("sample_b").replace_strict(urls).str.strip_prefix(base_url).alias("url_b"))
            r = evaluate(pairs, labels, 0.0)
            out.append({"max_distance": distance, "min_inliers": inliers, **{k: v for k, v in r.items() if k != "false"}})
    return out


def print_table(results: dict) -> None:
    cols = ["pairs", "false_pairs", "precision", "precision_recolours_excluded", "recall_main", "recall_crop60",
            "recall_rot5", "recall_crop80_off", "recall_crop60_off", "exact_false", "kept"]
    short = {c: c.replace("recall_", "R_").replace("precision_recolours_excluded", "prec_no_recol") for c in cols}
    print(f"{'method':<14}" + "".join(f"{short[c][:13]:>14}" for c in cols))
    for name, r in results.items():
        print(f"{name:<14}" + "".join(f"{r[c]!s:>14}" for c in cols))
    edits = list(next(iter(results.values()))["recall_per_edit"])
    print("\nrecall per edit\n" + f"{'method':<14}" + "".join(f"{e[:10]:>11}" for e in edits))
    for name, r in results.items():
        print(f"{name:<14}" + "".join(f"{r['recall_per_edit'][e]:>11.2f}" for e in edits))
    for name, r in results.items():
        print(f"\nfalse pairs of {name} ({len(r['false'])}):")
        for f in r["false"][:40]:
            print(f"  {f['similarity']:.3f}  {f['a']}  {f['b']}{'  (recolour)' if f['recolour'] else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=40, help="at most this many originals")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--sweep", action="store_true", help="also sweep PDQ min_quality x distance")
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()

    from pipelines.config import build_config
    from pipelines.demo import serve_files, write_url_list
    from pipelines.run import run
    from pipelines.runtime import init_ray

    files, labels = build_set(args.photos)
    work = Path(args.out or tempfile.mkdtemp(prefix="neardup-"))
    results, timings = {}, {}
    with serve_files(files) as base_url:
        rows = [SimpleNamespace(path=p, caption=f"image {i}", kind=labels[p][1]) for i, p in enumerate(files)]
        url_list = write_url_list(rows, base_url, work / "urls.parquet")
        config = None
        for method in args.methods.split(","):
            config = build_config(run_config(url_list, work / "run", METHODS[method]))
            init_ray(config.ray)
            start = time.perf_counter()
            stats = run(config, redo=("score", "dedup"))
            timings[method] = {"wall_s": round(time.perf_counter() - start, 1),
                               "score_s": stats.get("phases", {}).get("score", {}).get("wall_s")}
            results[method] = method_result(work / "run", labels, base_url, method, config)
        swept = sweep(work / "run", labels, base_url, config) if args.sweep and config.dedup.pdq.enabled else []
        verify_swept = (verify_sweep(work / "run", labels, base_url, config)
                        if args.sweep and config.dedup.pdq.verify.enabled else [])
    n_orig = sum(e == "original" for _, e in labels.values())
    n_edits = len({e for _, e in labels.values()}) - 2
    print(f"\n{len(files)} images: {n_orig} originals x {n_edits} edits, "
          f"{sum(e == 'negative' for _, e in labels.values())} hard negatives\n")
    print_table(results)
    if swept:
        print("\nPDQ + regions sweep (no verification)\n min_q  dist  pairs  false  precision  recall_main  crop60  rot5")
        for s in swept:
            print(f"{s['min_quality']:>6} {s['distance']:>5} {s['pairs']:>6} {s['false_pairs']:>6} {s['precision']:>10} "
                  f"{s['recall_main']:>12} {s['recall_crop60']:>7} {s['recall_rot5']:>5}")
    if verify_swept:
        print("\nPDQ + regions + verification sweep\n max_dist  min_inliers  pairs  false  precision  recall_main  "
              "crop60  rot5")
        for s in verify_swept:
            print(f"{s['max_distance']:>9} {s['min_inliers']:>12} {s['pairs']:>6} {s['false_pairs']:>6} "
                  f"{s['precision']:>10} {s['recall_main']:>12} {s['recall_crop60']:>7} {s['recall_rot5']:>5}")
    out = Path(__file__).resolve().parent / "results" / f"neardup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": len(files), "originals": n_orig, "methods": results, "timings": timings,
                               "sweep": swept, "verify_sweep": verify_swept, "run_dir": str(work)}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
