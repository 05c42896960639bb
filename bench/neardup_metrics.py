"""What bench/neardup_eval.py reports from a set's labels, the image pairs found and the cluster each sample ends in.

Pure functions of plain tables, shared by the real-run mode and the fast in-process mode.

Definitions (every image of one original, the original included, is one true group; every negative is a group
of its own):

- **pair precision**: true image pairs / image pairs reported (a pair is true when both ends are of one group);
  ``precision_recolours_excluded`` leaves out the false pairs between two recolours of one design.
- **pair recall** of an edit: the share of originals whose (original, edit) pair is reported directly.
  ``recall_main`` averages the split's main edits, ``recall_photometric`` its contrast/brightness/gamma edits,
  ``recall_geometry`` its off-centre crops and rotations; per image type (photo or a hard type) the same over
  the originals of that type.
- **cluster precision**: over every pair of samples that share a ``cluster_id``, the share that are true:
  a cluster that chains two groups of sizes a and b adds a*b false pairs, so giant chained components cost
  quadratically. Samples with no cluster (no duplicate) add nothing.
- **cluster recall**: over every true same-group pair (any two images of one original), the share whose two
  samples share a ``cluster_id``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import NamedTuple

import numpy as np
import polars as pl

# Edits of each split (support.evalset.tune_edits / report_edits), by what the goals name.
GEOMETRY = {"tune": ("crop60", "rot5", "crop80_off", "crop60_off"),
            "report": ("crop80_off", "crop60_any", "crop_any", "rot")}
PHOTOMETRIC = {"tune": ("contrast07", "bright13"), "report": ("contrast", "bright", "gamma")}


class Label(NamedTuple):
    """What one served image is: its group, its edit ("original", an edit name, or "negative"), its image type
    (photo, a hard type, or neg_<kind> for a negative) and, for a negative, its design (shared by recolours)."""

    group: str
    edit: str
    kind: str
    design: str | None = None


def is_recolour(a: Label, b: Label) -> bool:
    return a.design is not None and a.design == b.design and a.group != b.group


def _recall(found: set, groups: list[str], edits: list[str]) -> float | None:
    hits = [(g, e) in found for g in groups for e in edits]
    return round(float(np.mean(hits)), 4) if hits else None


def pair_metrics(pairs: pl.DataFrame, labels: dict[str, Label], split: str) -> dict:
    """Pair precision and recall (per edit, per image type) of image ``pairs`` (url_a, url_b, detector,
    similarity; already at their thresholds), and the false pairs, negatives' and recolours' apart."""
    true, false, found = 0, [], set()
    for a, b, det, sim in pairs.select("url_a", "url_b", "detector", "similarity").iter_rows():
        la, lb = labels[a], labels[b]
        if la.group == lb.group:
            true += 1
            other = lb.edit if la.edit == "original" else la.edit if lb.edit == "original" else None
            found.add((la.group, other))
        else:
            false.append({"a": a, "b": b, "detector": det, "similarity": round(sim, 4),
                          "recolour": is_recolour(la, lb), "negatives": la.edit == lb.edit == "negative"})
    edits = sorted({lab.edit for lab in labels.values() if lab.edit not in ("original", "negative")})
    originals = {lab.group: lab.kind for lab in labels.values() if lab.edit == "original"}
    groups = sorted(originals)
    main = [e for e in edits if e not in GEOMETRY[split]]
    types = sorted(set(originals.values()))
    by_type = {t: [g for g in groups if originals[g] == t] for t in types}
    hard = [g for g in groups if originals[g] != "photo"]
    precision = true / max(1, true + len(false))
    return {
        "pairs": true + len(false), "true_pairs": true, "false_pairs": len(false), "precision": round(precision, 4),
        "precision_recolours_excluded": round(true / max(1, true + sum(not f["recolour"] for f in false)), 4),
        "negative_false_pairs": sum(f["negatives"] and not f["recolour"] for f in false),
        "recolour_false_pairs": sum(f["recolour"] for f in false),
        "recall_main": _recall(found, groups, main),
        "recall_photometric": _recall(found, groups, list(PHOTOMETRIC[split])),
        "recall_geometry": _recall(found, groups, list(GEOMETRY[split])),
        "recall_hard_main": _recall(found, hard, main), "recall_photo_main": _recall(found, by_type.get("photo", []), main),
        "recall_per_edit": {e: _recall(found, groups, [e]) for e in edits},
        "recall_per_type": {t: _recall(found, gs, main) for t, gs in by_type.items()},
        "recall_per_type_edit": {t: {e: _recall(found, gs, [e]) for e in edits} for t, gs in by_type.items()},
        "missed": {e: [g for g in groups if (g, e) not in found] for e in edits},
        "false": sorted(false, key=lambda f: -f["similarity"]),
    }


def cluster_metrics(clusters: dict[str, str | None], labels: dict[str, Label]) -> dict:
    """Cluster precision and recall (module docstring) of ``clusters`` (url -> cluster_id, None: no cluster)."""
    members: dict[str, list[str]] = defaultdict(list)
    for url, cid in clusters.items():
        if cid is not None:
            members[cid].append(labels[url].group)
    same = total = 0
    mixed = []
    for cid, groups in members.items():
        counts = Counter(groups)
        n = len(groups)
        total += n * (n - 1) // 2
        same += sum(c * (c - 1) // 2 for c in counts.values())
        if len(counts) > 1:
            mixed.append({"cluster_id": cid, "size": n, "groups": dict(counts.most_common(6))})
    sizes = Counter(lab.group for lab in labels.values())
    true_pairs = sum(k * (k - 1) // 2 for k in sizes.values())
    joined = defaultdict(Counter)
    for url, cid in clusters.items():
        if cid is not None:
            joined[labels[url].group][cid] += 1
    together = sum(c * (c - 1) // 2 for counts in joined.values() for c in counts.values())
    return {"cluster_precision": round(same / total, 4) if total else 1.0,
            "cluster_recall": round(together / true_pairs, 4) if true_pairs else None,
            "clusters": len(members), "largest_cluster": max((len(g) for g in members.values()), default=0),
            "mixed_clusters": len(mixed), "mixed": sorted(mixed, key=lambda m: -m["size"])[:20]}


def evaluate(pairs: pl.DataFrame, clusters: dict[str, str | None], labels: dict[str, Label], split: str) -> dict:
    return {**pair_metrics(pairs, labels, split), **cluster_metrics(clusters, labels)}
