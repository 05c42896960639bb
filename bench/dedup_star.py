"""The exact-group star from the field, generated: how many copies of one image survive dedup.

    PYTHONPATH=. python bench/dedup_star.py [--copies 167] [--run DIR]

One image under ``copies`` URLs (one sha256), a pixel-identical sibling (same pixels, other bytes),
and the group's centre (its smallest sample_id, the centre of equal_key_pairs' star) either rejected
by another rule or linked by pHash to a better picture. Pairs come from the real equal_key_pairs;
clusters from the real cluster() with the keep policy's eligibility. With ``--run DIR`` it also
curates the same case for real: ``thresher run`` (exact + pHash + MinHash dedup) over a loopback URL
list (exact detectors), the copies' first URL under a one-word caption that the caption rule rejects. Run it on two
checkouts to compare. Prints a table and writes bench/results/dedup_star-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dedup.cluster import PAIRS_SCHEMA, cluster, with_kind  # noqa: E402
from dedup.cluster import equal_key_pairs  # noqa: E402
from dedup.config import DedupConfig  # noqa: E402
from manifests import schema as col  # noqa: E402

ELIGIBLE = "eligible"


def case(copies: int, centre: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"{i:05d}" for i in range(copies + 2)]  # copies, the sibling, a better picture
    rows = pl.DataFrame({col.SAMPLE_ID: ids[:-1], col.SHA256: ["a" * 64] * copies + ["b" * 64],
                         col.PIXEL_HASH: ["p" * 64] * (copies + 1)}).lazy()
    pairs = [equal_key_pairs(rows, col.SHA256, "sha256"), equal_key_pairs(rows, col.PIXEL_HASH, "pixel_hash")]
    if centre == "linked":
        link = pl.DataFrame({"sample_a": [ids[0]], "sample_b": [ids[-1]], "detector": ["phash"], "similarity": [0.9]})
        pairs.append(with_kind(link.cast({"similarity": pl.Float32})).select(list(PAIRS_SCHEMA)))
    eligible = [centre != "rejected"] + [True] * (copies + 1)
    scores = pl.DataFrame({col.SAMPLE_ID: ids, ELIGIBLE: eligible,
                           col.AESTHETIC_SCORE: [5.0] * (copies + 1) + [6.0]})
    return pl.concat(pairs), scores


def curated(copies: int, out: Path) -> dict:
    """A real run: the copies (first one captioned "img"), a PNG sibling, and every other bundled photo."""
    from pipelines.cli.corpus import Sample, jpeg, load_photos
    from pipelines.cli.demo import demo_config, serve_files, write_url_list
    from pipelines.config import build_config
    from pipelines.run.driver import run
    from pipelines.run.runtime import init_ray

    photos = sorted(load_photos().items())
    (name, (img, caption)), others = photos[0], photos[1:]
    copy = jpeg(img)
    comment = b"re-saved by a CDN"  # a JPEG COM segment after SOI: other bytes, the same pixels
    sibling = copy[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + copy[2:]
    files = {f"/cdn{k}/{name}.jpg": copy for k in range(copies)} | {f"/{name}-resaved.jpg": sibling}
    rows = [Sample(path, "img" if k == 0 else f"{caption} (mirror {k})", "copy") for k, path in enumerate(files)]
    for other, (picture, text) in others:
        files[f"/{other}.jpg"] = jpeg(picture)
        rows.append(Sample(f"/{other}.jpg", text, "other"))
    with serve_files(files) as base_url:
        data = demo_config(write_url_list(rows, base_url, out / "urls.parquet"), out / "run")
        data["filters"] = {}  # the basic rules only: the one-word caption is what rejects the centre
        # Exact detectors only: pHash's range search stores every pair of identical codes (a clique),
        # which hides the star; SSCD's search keeps k neighbours per query and does not.
        data["dedup"] = {"exact": {"enabled": True}}
        config = build_config(data)
        init_ray(config.ray)
        run(config)
    manifest = pl.read_parquet(out / "run" / "manifest.parquet").head(len(rows))
    kept = manifest.head(copies + 1).filter(pl.col(col.KEEP))
    return {"centre": "rejected", "mode": "thresher run", "rows": copies + 1, "copies_kept": kept.height,
            "wall_ms": None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=167)
    parser.add_argument("--run", type=Path, help="also curate the case with thresher run in this (new) folder")
    args = parser.parse_args()
    config = DedupConfig()
    results = []
    for centre in ("rejected", "linked"):
        pairs, scores = case(args.copies, centre)
        for mode in ("greedy", "component"):
            start = time.perf_counter()
            out = cluster(pairs, config.thresholds(), scores, (ELIGIBLE, *config.keep.order), mode)
            dropped = set(out.filter(pl.col(col.DUPLICATE_OF).is_not_null())[col.SAMPLE_ID])
            copies = [s for s in scores[col.SAMPLE_ID][:-1] if s not in dropped]
            results.append({"centre": centre, "mode": mode, "rows": args.copies + 1, "copies_kept": len(copies),
                            "wall_ms": round((time.perf_counter() - start) * 1000, 1)})
    if args.run is not None:
        results.append(curated(args.copies, args.run))
    print(f"{'centre':<10}{'mode':<14}{'rows':>6}{'copies kept':>13}{'ms':>8}")
    for r in results:
        print(f"{r['centre']:<10}{r['mode']:<14}{r['rows']:>6}{r['copies_kept']:>13}{r['wall_ms'] or '':>8}")
    out = Path(__file__).resolve().parent / "results" / f"dedup_star-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
