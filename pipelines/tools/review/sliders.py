"""The thresholds the review app offers as sliders: every rule ``thresher tune`` can be given by ``--set``.

Score thresholds come from ``filters.config.threshold_rules`` (the one list), the fixed rules from
``filters.rules``, and dedup thresholds from each detector that stored pairs on this run (re-clustering
goes no lower than what was stored). A setting from the page is checked against this list before it
becomes an override: the page can move a known threshold within its range, nothing else.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import yaml

from dedup.config import DETECTORS
from filters.config import threshold_rules
from manifests import schema as col
from manifests.schema import Reason, Status
from pipelines.config import RunConfig
from pipelines.run import repick

BINS = 40


@dataclass(frozen=True)
class Slider:
    key: str  # the --set key
    label: str
    reason: str  # the reject reason it controls
    value: float
    low: float
    high: float
    integer: bool = False
    column: str | None = None  # the score column its histogram shows
    side: str = "min"  # min: rows below are rejected; max: rows at or above


def _range(frame: pl.LazyFrame, column: str, value: float) -> tuple[float, float]:
    ok = frame.filter(pl.col(col.STATUS) == Status.SUCCESS).select(
        pl.col(column).fill_nan(None).min().alias("lo"), pl.col(column).fill_nan(None).max().alias("hi")).collect()
    lo, hi = ok["lo"][0], ok["hi"][0]
    lo = value if lo is None else min(float(lo), value)
    hi = value if hi is None else max(float(hi), value)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def score_sliders(config: RunConfig, frame: pl.LazyFrame, columns: set[str]) -> list[Slider]:
    sliders = []
    for rule in threshold_rules(config.filters):
        if not rule.field or rule.column not in columns:
            continue
        value = rule.minimum if rule.minimum is not None else rule.maximum
        lo, hi = _range(frame, rule.column, float(value))
        sliders.append(Slider(f"filters.{rule.section}.{rule.field}", f"{rule.column} {'min' if rule.minimum is not None else 'max'}",
                              rule.reason, float(value), lo, hi, column=rule.column,
                              side="min" if rule.minimum is not None else "max"))
    return sliders


def rule_sliders(config: RunConfig) -> list[Slider]:
    rules = config.filters.rules
    return [
        Slider("filters.rules.min_image_side", "shorter side min (px)", Reason.IMAGE_TOO_SMALL,
               rules.min_image_side, 0, max(2048, rules.min_image_side), integer=True),
        Slider("filters.rules.max_aspect_ratio", "aspect ratio max", Reason.ASPECT_RATIO,
               rules.max_aspect_ratio, 1.0, max(10.0, rules.max_aspect_ratio), side="max"),
        Slider("filters.rules.min_caption_words", "caption words min", Reason.CAPTION_TOO_SHORT,
               rules.min_caption_words, 0, max(20, rules.min_caption_words), integer=True),
        Slider("filters.rules.min_caption_chars", "caption chars min", Reason.CAPTION_TOO_SHORT,
               rules.min_caption_chars, 0, max(100, rules.min_caption_chars), integer=True),
    ]


def dedup_sliders(config: RunConfig, run: Path) -> list[Slider]:
    """A detector's threshold, from what it stored up: only where this run stored its pairs."""
    if not repick.pairs_layout(run).pairs_files():
        return []
    dedup, sliders = config.dedup, []
    for detector in (d for d in DETECTORS if d.enabled(dedup)):
        section = getattr(dedup, detector.section)
        if detector.setting == "threshold":  # a similarity: from what the run stored up
            sliders.append(Slider(f"dedup.{detector.section}.threshold", f"{detector.name} similarity min",
                                  "duplicate", section.threshold, section.stored_from, 1.0, side="dup"))
        elif detector.setting == "eps":  # a distance: up to what the run stored
            top = max(section.eps, section.store_eps or 0.0)
            sliders.append(Slider(f"dedup.{detector.section}.eps", f"{detector.name} eps max",
                                  Reason.DUPLICATE_SEMANTIC, section.eps, 0.0, top, side="dup"))
    return sliders


def sliders(config: RunConfig, run: Path, frame: pl.LazyFrame, columns: set[str]) -> list[Slider]:
    return [*score_sliders(config, frame, columns), *rule_sliders(config), *dedup_sliders(config, run)]


def overrides(known: list[Slider], setting: dict) -> list[str]:
    """``--set`` strings for the setting's values that differ from the run's; ValueError on anything unknown."""
    by_key = {s.key: s for s in known}
    out = []
    for key, value in sorted(setting.items()):
        slider = by_key.get(key)
        if slider is None:
            raise ValueError(f"{key!r} is not a threshold this run can change")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key}: {value!r} is not a finite number")
        value = int(round(value)) if slider.integer else float(value)
        if value != slider.value:
            out.append(f"{key}={value}")
    return out


def snippet(overrides: list[str]) -> str:
    """The overrides as the YAML a config file would hold (nested sections)."""
    tree: dict = {}
    for override in overrides:
        key, _, value = override.partition("=")
        *path, leaf = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return yaml.safe_dump(tree, sort_keys=False) if tree else "# no threshold changed\n"


def reexport_command(run: Path, overrides: list[str]) -> str:
    return " ".join(["thresher", "reexport", shlex.quote(str(run)), *(f"--set {shlex.quote(o)}" for o in overrides)])


def histogram(frame: pl.LazyFrame, slider: Slider) -> dict:
    """BINS equal-width counts of the slider's score over scored rows (the page draws the line)."""
    width = (slider.high - slider.low) / BINS
    values = frame.select(pl.col(slider.column).fill_nan(None).drop_nulls().cast(pl.Float64).alias("v"))
    binned = values.select(((pl.col("v") - slider.low) / width).floor().clip(0, BINS - 1).cast(pl.Int32).alias("b"))
    counts = dict(binned.group_by("b").len().collect().iter_rows())
    return {"low": slider.low, "high": slider.high, "counts": [counts.get(i, 0) for i in range(BINS)]}


def as_json(slider: Slider) -> dict:
    return asdict(slider)
