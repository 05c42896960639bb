"""Labels that measure rules: who said a sample is good or bad, drawn at random within strata.

The labels file (``RUN/labels.parquet``, the only file the review app writes) holds one row per label:
``who``, ``when`` (UTC), ``sample_id``, ``label`` (good / bad / skip), and where it was drawn from
(``rule``, ``stratum``) and its manifest ``row``. The latest label of a sample counts.

Drawing: a rule's population is split into strata -- rejected by the rule / kept by the whole decision,
each cut into score bands (quantiles of the rule's score column; one band for rules without a score) --
and samples are drawn uniformly at random inside each stratum, never "the first N".

Estimating, per rule and under the current setting: the share of its rejections labelled bad (its
precision) and the share of kept rows labelled bad (what it leaves), each a stratified mean over the
strata that have labels, weighted by the strata's current sizes (post-stratification), with a Wilson
interval on the effective sample size (n_eff = p(1-p)/var, Korn & Graubard). The implied recall -- the
rule's share of all bad rows -- follows from the two and the population sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from manifests.io import write_parquet

LABELS_FILE = "labels.parquet"
LABELS = ("good", "bad", "skip")
BANDS = 4
Z95 = 1.959964
SCHEMA = pa.schema([("who", pa.string()), ("when", pa.timestamp("us", tz="UTC")), ("sample_id", pa.string()),
                    ("label", pa.string()), ("rule", pa.string()), ("stratum", pa.string()), ("row", pa.int64())])


def read_labels(path: Path) -> pl.DataFrame:
    if not path.exists():
        return pl.from_arrow(SCHEMA.empty_table())
    return pl.read_parquet(path)


def add_label(path: Path, who: str, sample_id: str, label: str, rule: str, stratum: str, row: int) -> int:
    """Append one label (rewrites the small file atomically); returns how many labels the file holds."""
    if label not in LABELS:
        raise ValueError(f"label {label!r}: use one of {', '.join(LABELS)}")
    new = pl.from_arrow(pa.table({"who": [who], "when": [datetime.now(timezone.utc)], "sample_id": [sample_id],
                                  "label": [label], "rule": [rule], "stratum": [stratum], "row": [row]},
                                 schema=SCHEMA))
    table = pl.concat([read_labels(path), new], how="vertical_relaxed")
    write_parquet(table.to_arrow().cast(SCHEMA), path)
    return table.height


def latest(labels: pl.DataFrame) -> pl.DataFrame:
    """One label per sample (the latest), skips left out."""
    return labels.sort("when").group_by("sample_id").last().filter(pl.col("label") != "skip")


def bands(scores: np.ndarray | None, members: np.ndarray) -> np.ndarray:
    """Band 0..BANDS-1 of every row by quantiles of ``scores`` among ``members`` (all 0 without scores)."""
    out = np.zeros(len(members), dtype=np.int8)
    if scores is None:
        return out
    values = scores[members & ~np.isnan(scores)]
    if len(values) == 0:
        return out
    edges = np.quantile(values, np.linspace(0, 1, BANDS + 1)[1:-1])
    scored = ~np.isnan(scores)
    out[scored] = np.searchsorted(edges, scores[scored], side="right").astype(np.int8)
    return out


def draw(members: np.ndarray, band: np.ndarray, n: int, seed: int) -> list[tuple[int, str]]:
    """Up to ``n`` rows drawn uniformly at random within each band of ``members``, as (row, band name)."""
    rng = np.random.default_rng(seed)
    present = [b for b in range(BANDS) if (members & (band == b)).any()]
    out = []
    for i, b in enumerate(present):
        rows = np.flatnonzero(members & (band == b))
        take = n // len(present) + (1 if i < n % len(present) else 0)
        out += [(int(r), f"band {b}") for r in rng.choice(rows, size=min(take, len(rows)), replace=False)]
    rng.shuffle(out)
    return out


def wilson(p: float, n_eff: float) -> tuple[float, float]:
    if n_eff <= 0:
        return 0.0, 1.0
    denom = 1 + Z95 ** 2 / n_eff
    centre = (p + Z95 ** 2 / (2 * n_eff)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n_eff + Z95 ** 2 / (4 * n_eff ** 2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    share: float | None  # stratified share labelled bad
    low: float
    high: float
    labelled: int
    coverage: float  # share of the population in strata that have labels

    def as_dict(self) -> dict:
        return {"share": self.share, "low": self.low, "high": self.high, "labelled": self.labelled,
                "coverage": self.coverage}


def stratified(members: np.ndarray, band: np.ndarray, rows: np.ndarray, bad: np.ndarray) -> Estimate:
    """Share of ``members`` that is bad, from labelled ``rows`` (with ``bad``) post-stratified by ``band``."""
    inside = members[rows]
    rows, bad = rows[inside], bad[inside]
    total = int(members.sum())
    weights, shares, variances = [], [], []
    for b in range(BANDS):
        labelled = band[rows] == b
        n = int(labelled.sum())
        if n == 0:
            continue
        size = int((members & (band == b)).sum())
        p = float(bad[labelled].mean())
        weights.append(size)
        shares.append(p)
        variances.append(p * (1 - p) / n * (1 - min(n, size) / max(size, 1)) if n > 1 else 0.25)
    if not weights or total == 0:
        return Estimate(None, 0.0, 1.0, int(len(rows)), 0.0)
    w = np.array(weights, dtype=float) / sum(weights)
    share = float((w * shares).sum())
    var = float((w ** 2 * variances).sum())
    n_eff = share * (1 - share) / var if var > 0 else float(len(rows))
    low, high = wilson(share, n_eff)
    return Estimate(share, low, high, int(len(rows)), sum(weights) / total)


def recall(precision: Estimate, kept_bad: Estimate, rejected: int, kept: int) -> dict:
    """The rule's share of all bad rows: bad it rejects / (bad it rejects + bad left among kept)."""
    if precision.share is None or kept_bad.share is None:
        return {"share": None, "low": 0.0, "high": 1.0}

    def ratio(p: float, b: float) -> float:
        caught, left = p * rejected, b * kept
        return caught / (caught + left) if caught + left > 0 else 1.0

    return {"share": ratio(precision.share, kept_bad.share), "low": ratio(precision.low, kept_bad.high),
            "high": ratio(precision.high, kept_bad.low)}
