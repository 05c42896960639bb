"""Why the layout detector's photometric match (``dedup.layout.tone_match``) misses a copy, and how close distinct
images come to it: a diagnosis for tuning ``dedup.layout.tone`` (issue 24).

    PYTHONPATH=. python bench/tone_misses.py [--split tune] [--edits report] [--set KEY=VALUE] [--closest 8]

Runs bench/neardup_eval.py's fast mode once (pdq_regions, the default method) on the split, then prints

- each (original, copy) pair of a photometric or greyscale edit, or of any main edit of a low-texture original,
  that no image pair joins, with each layout's kind (S shaped, T tinted, G grey, - none: ``dedup.layout.kinds``),
  grey-L spread and RMS chroma, the pair's statistics (grey-L correlation, hue and change cosines, RMS grey-L
  difference, the correlation without clipped cells (grey L within 2 of 0 or 100 in either layout) and the
  rank correlation) and the check that refused it: ``kind`` (no rule compares those kinds), the statistic
  under its limit with its value and the limit, or ``sum`` (near every limit at once); and
- the distinct-image pairs (other groups, one image at least under the layout band) closest to each rule's
  limits, as ``tone_match``'s share of them (1: at a limit), the false pairs a looser setting lets in first.

``--edits report``: the reporting split's edit family (its parameter ranges: brightness 0.7-1.4, gamma 0.6-1.6,
contrast 0.5-0.8) on the tuning split's originals. Tune on the tuning split's originals only. Writes
bench/results/tone_misses-<split>-<edits>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.neardup_eval import METHODS, build_set, image_pairs, run_config  # noqa: E402
from bench.neardup_fast import fast_run, staged_cached  # noqa: E402
from bench.neardup_metrics import GEOMETRY, PHOTOMETRIC, evaluate  # noqa: E402
from dedup.config import ToneConfig  # noqa: E402
from dedup.layout import Tone, kinds, tone, tone_match, unpack  # noqa: E402
from pipelines.config import build_config  # noqa: E402

CLIPPED = 2.0  # grey L within this of 0 or 100: a cell a brightness edit may have clipped


def layouts(config, files: dict[str, bytes]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(URL paths, CIELAB layouts (n, GRID, HALF, 3), low: PDQ quality under the layout band) of the set."""
    from bench.neardup_fast import _SCORED

    scores = next(iter(_SCORED.values()))[0].to_pydict()
    urls = staged_cached(tuple(files.items()), config.crawl.image_size, config.crawl.resize_mode)["sample_id"]
    assert list(urls) == scores["sample_id"]
    values = unpack(np.stack([np.frombuffer(v, np.uint8) for v in scores["layout_code"]]))
    band = config.dedup.pdq.min_quality + config.dedup.layout.quality_margin
    return scores["sample_id"], values, np.array([q is not None and q < band for q in scores["pdq_quality"]])


def kind_names(t: Tone, config: ToneConfig) -> np.ndarray:
    shaped, tinted, grey = kinds(t, config)
    return np.char.add(np.where(grey, "G", ""), np.where(shaped, "S", np.where(tinted, "T", "-")))


def refusal(tx: Tone, ty: Tone, config: ToneConfig) -> list[str]:
    """Per pair: the check ``tone_match`` failed, by how much ("" where it matches)."""
    corr, hue, change = ((u * v).sum(1) for u, v in ((tx.shape, ty.shape), (tx.hue, ty.hue), (tx.change, ty.change)))
    delta_l = np.sqrt(((tx.level - ty.level) ** 2).mean(1))
    (sx, tx_, gx), (sy, ty_, gy) = kinds(tx, config), kinds(ty, config)
    used = tone_match(tx, ty, config)
    out = []
    for k in range(len(corr)):
        if np.isfinite(used[k]):
            out.append("")
        elif sx[k] and sy[k] and not gx[k] and not gy[k]:
            low = [f"{n} {v:.3f} < {lim}" for n, v, lim in (("corr", corr[k], config.min_correlation),
                                                           ("hue", hue[k], config.min_hue),
                                                           ("change", change[k], config.min_change)) if v < lim]
            out.append(", ".join(low) or "sum")
        elif tx_[k] and ty_[k]:
            out.append(f"tint hue {hue[k]:.3f}/{config.min_hue} change {change[k]:.3f}/{config.tint_min_change}")
        elif sx[k] and sy[k] and gx[k] != gy[k]:
            out.append(f"grey corr {corr[k]:.3f}/{config.grey_min_correlation} "
                       f"dL {delta_l[k]:.2f}/{config.grey_max_delta_l}")
        else:
            out.append("kind")
    return out


def statistics(t: Tone, i: np.ndarray, j: np.ndarray, config: ToneConfig) -> dict[str, list]:
    """The pair statistics of the module docstring, per pair (i[k], j[k])."""
    tx, ty = t.take(i), t.take(j)
    kept = (np.minimum(tx.level, ty.level) > CLIPPED) & (np.maximum(tx.level, ty.level) < 100 - CLIPPED)
    return {"kinds": [f"{a}/{b}" for a, b in zip(kind_names(tx, config), kind_names(ty, config))],
            "spread": [[round(float(a), 2), round(float(b), 2)] for a, b in zip(tx.spread, ty.spread)],
            "chroma": [[round(float(a), 1), round(float(b), 1)] for a, b in zip(tx.chroma, ty.chroma)],
            "corr": _round((tx.shape * ty.shape).sum(1)), "hue": _round((tx.hue * ty.hue).sum(1)),
            "change": _round((tx.change * ty.change).sum(1)),
            "delta_l": _round(np.sqrt(((tx.level - ty.level) ** 2).mean(1))),
            "unclipped": kept.sum(1).tolist(), "corr_unclipped": _round(_correlation(tx.level, ty.level, kept)),
            "rank_corr": _round(_correlation(rankdata(tx.level, axis=1), rankdata(ty.level, axis=1),
                                             np.ones_like(kept))),
            "refused": refusal(tx, ty, config)}


def _correlation(x: np.ndarray, y: np.ndarray, kept: np.ndarray) -> np.ndarray:
    weights = kept.astype(np.float64)
    count = np.maximum(weights.sum(1, keepdims=True), 1)
    cx = (x - (x * weights).sum(1, keepdims=True) / count) * weights
    cy = (y - (y * weights).sum(1, keepdims=True) / count) * weights
    norm = np.linalg.norm(cx, axis=1) * np.linalg.norm(cy, axis=1)
    return np.where(norm > 1e-9, (cx * cy).sum(1) / np.maximum(norm, 1e-12), np.nan)


def _round(v: np.ndarray) -> list:
    return [None if np.isnan(x) else round(float(x), 3) for x in v]


def misses(result: dict, labels: dict, split: str) -> list[tuple[str, str, str]]:
    """(edit, group, type) of the missed photometric and greyscale copies, and of every main edit of a
    low-texture original."""
    photometric = set(PHOTOMETRIC[split]) | {"grey"}
    out = []
    for edit, groups in result["missed"].items():
        for group in groups:
            kind = labels[f"/o/{group}/original.jpg"].kind
            if edit in photometric or (kind != "photo" and edit not in GEOMETRY[split]):
                out.append((edit, group, kind))
    return out


def closest_distinct(t: Tone, urls: list[str], low: np.ndarray, labels: dict, config: ToneConfig,
                     count: int) -> list[dict]:
    """The ``count`` distinct-image pairs that use the least share of the photometric match's limits."""
    groups = np.array([labels[u].group for u in urls])
    a, b = np.triu_indices(len(urls), 1)
    keep = (groups[a] != groups[b]) & (low[a] | low[b])
    a, b = a[keep], b[keep]
    shares = []
    for lo in range(0, len(a), 100_000):
        shares.append(_share(t.take(a[lo:lo + 100_000]), t.take(b[lo:lo + 100_000]), config))
    share = np.concatenate(shares)
    best = np.argsort(share)[:count]
    stats = statistics(t, a[best], b[best], config)
    return [{"a": urls[a[k]], "b": urls[b[k]], "share": round(float(share[k]), 3),
             "low": [bool(low[a[k]]), bool(low[b[k]])],
             **{name: values[n] for name, values in stats.items()}} for n, k in enumerate(best)]


def _share(tx: Tone, ty: Tone, config: ToneConfig) -> np.ndarray:
    """``tone_match``'s share of its limits without its cut at 1 (inf: no rule compares the pair): every limit
    1000 times as far, the share read back 1000 times as large."""
    far = {f: 1 - (1 - getattr(config, f)) * 1e3 for f in ("min_correlation", "min_hue", "min_change",
                                                            "tint_min_change", "grey_min_correlation")}
    stretched = config.model_copy(update={**far, "grey_max_delta_l": config.grey_max_delta_l * 1e3})
    return tone_match(tx, ty, stretched) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="tune", choices=("tune", "report"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--edits", choices=("tune", "report"),
                        help="another split's edit family (default: the split's own)")
    parser.add_argument("--closest", type=int, default=8)
    args = parser.parse_args()
    files, labels = build_set(args.split, edits=args.edits)
    edits = args.edits or args.split  # the edit names the metrics group as photometric and geometric
    with tempfile.TemporaryDirectory(prefix="tone-misses-") as work:
        config = build_config(run_config(Path(work) / "urls.parquet", Path(work) / "run", METHODS["pdq_regions"]),
                              args.overrides)
        pairs, clusters, _ = fast_run(config, files)
    result = evaluate(image_pairs(pairs, config)[0], clusters, labels, edits)
    urls, values, low = layouts(config, files)
    tone_config = config.dedup.layout.tone
    t, at = tone(values), {u: k for k, u in enumerate(urls)}
    missed = misses(result, labels, edits)
    i = np.array([at[f"/o/{g}/original.jpg"] for _, g, _ in missed], np.int64)
    j = np.array([at[f"/o/{g}/{e}.jpg"] for e, g, _ in missed], np.int64)
    stats = statistics(t, i, j, tone_config)
    rows = [{"edit": e, "group": g, "type": kind, "low": [bool(low[i[n]]), bool(low[j[n]])],
             **{name: values[n] for name, values in stats.items()}} for n, (e, g, kind) in enumerate(missed)]
    closest = closest_distinct(t, urls, low, labels, tone_config, args.closest)
    summary = {k: result[k] for k in ("precision", "false_pairs", "negative_false_pairs", "recolour_false_pairs",
                                      "recall_per_edit", "recall_per_type", "false")}
    for row in [summary, *rows, *({"edit": "DISTINCT", **c} for c in closest)]:
        print(json.dumps(row))
    out = Path(__file__).parent / "results" / f"tone_misses-{args.split}-{edits}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"split": args.split, "edits": edits, "overrides": args.overrides, **summary,
                               "missed": rows, "closest_distinct": closest}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
