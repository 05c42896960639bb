"""Score histograms (kept vs rejected, thresholds drawn) and a bar chart of reject reasons, as PNG.

Uses matplotlib's object API on the Agg canvas (no pyplot, no display, no global state), imported
only when a plot is drawn. A score
column the manifest lacks, or holds only nulls in, gets no histogram.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from manifests import schema as col
from manifests.io import atomic_path

if TYPE_CHECKING:  # matplotlib is imported where a plot is drawn, so tune and query never load it
    from matplotlib.figure import Figure

SCORE_COLUMNS = (col.CLIP_SCORE, col.AESTHETIC_SCORE, col.NSFW_PROB, col.DUP_SIMILARITY, col.WATERMARK_PROB,
                 col.TEXT_AREA_FRAC, col.CAPTION_TEXT_OVERLAP, col.BLUR_VAR, col.GREY_ENTROPY, col.CAPTION_LANG_PROB)
TITLES = {col.CLIP_SCORE: "CLIP image-text similarity", col.AESTHETIC_SCORE: "Aesthetic score",
          col.NSFW_PROB: "NSFW probability", col.DUP_SIMILARITY: "Duplicate similarity",
          col.WATERMARK_PROB: "Watermark probability", col.TEXT_AREA_FRAC: "Share of the image that is text",
          col.CAPTION_TEXT_OVERLAP: "Share of caption words read in the image",
          col.BLUR_VAR: "Sharpness (variance of the Laplacian)", col.GREY_ENTROPY: "Grey-level entropy (bits)",
          col.CAPTION_LANG_PROB: "Caption language confidence"}
KEPT_COLOUR, REJECTED_COLOUR, THRESHOLD_COLOUR = "#2e7d32", "#c62828", "#1a1a1a"
BINS = 60


@dataclass(frozen=True)
class Threshold:
    """A line to draw: rows on the wrong side of ``value`` are rejected with ``reason``."""

    column: str
    value: float
    label: str


def score_columns(names: list[str]) -> list[str]:
    """The score columns present, in display order (the known ones first, then any later ``*_score``)."""
    known = [c for c in SCORE_COLUMNS if c in names]
    extra = sorted(c for c in names if c.endswith("_score") and c not in known)
    return known + extra


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def histogram_figure(values: pl.DataFrame, column: str, thresholds: list[Threshold]) -> Figure:
    """Stacked kept/rejected histogram of ``column`` with its thresholds; ``values`` has ``column`` and ``keep``."""
    data = values.drop_nulls(column)
    kept = data.filter(pl.col(col.KEEP))[column].to_numpy()
    rejected = data.filter(~pl.col(col.KEEP))[column].to_numpy()
    figure = _figure(7, 3.6)
    ax = figure.add_subplot()
    edges = np.histogram_bin_edges(data[column].to_numpy(), bins=BINS)
    ax.hist([kept, rejected], bins=edges, stacked=True, color=[KEPT_COLOUR, REJECTED_COLOUR],
            label=[f"kept ({len(kept):,})", f"rejected ({len(rejected):,})"])
    for t in (t for t in thresholds if t.column == column):
        ax.axvline(t.value, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.5)
        ax.annotate(f"{t.label} = {t.value:g}", (t.value, 1), xycoords=("data", "axes fraction"),
                    xytext=(4, -12), textcoords="offset points", fontsize=8)
    ax.set_title(TITLES.get(column, column))
    ax.set_xlabel(column)
    ax.set_ylabel("rows")
    ax.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def histogram_png(values: pl.DataFrame, column: str, thresholds: list[Threshold]) -> bytes:
    return _png(histogram_figure(values, column, thresholds))


def reasons_png(counts: dict[str, int]) -> bytes:
    """Horizontal bars, one per reject reason (a row counts under each of its reasons)."""
    items = sorted(counts.items(), key=lambda kv: kv[1])
    figure = _figure(7, max(2.0, 0.35 * len(items) + 1.2))
    ax = figure.add_subplot()
    ax.barh([k for k, _ in items] or ["(none)"], [v for _, v in items] or [0], color=REJECTED_COLOUR)
    for i, (_, v) in enumerate(items):
        ax.annotate(f"{v:,}", (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_title("Reject reasons")
    ax.set_xlabel("rows")
    figure.tight_layout()
    return _png(figure)


def removal_curve_png(points: list[tuple[float, float]], current: float | None, title: str, xlabel: str) -> bytes:
    """A line of the share of rows removed against a threshold, the configured value drawn dashed."""
    figure = _figure(7, 3.6)
    ax = figure.add_subplot()
    ax.plot([x for x, _ in points], [100 * y for _, y in points], marker="o", color=REJECTED_COLOUR)
    if current is not None:
        ax.axvline(current, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.5)
        ax.annotate(f"configured = {current:g}", (current, 1), xycoords=("data", "axes fraction"),
                    xytext=(4, -12), textcoords="offset points", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("% of rows removed")
    figure.tight_layout()
    return _png(figure)


def reason_counts(manifest: pl.LazyFrame) -> dict[str, int]:
    counts = (manifest.select(pl.col(col.REJECT_REASONS).explode().alias("reason")).drop_nulls()
              .group_by("reason").len().sort("len", descending=True).collect())
    return dict(counts.iter_rows())


def plot_pngs(manifest: pl.LazyFrame, thresholds: list[Threshold]) -> dict[str, bytes]:
    """File name -> PNG bytes: ``<score>.png`` per score column present, and ``reject_reasons.png``."""
    columns = score_columns(manifest.collect_schema().names())
    values = manifest.select(col.KEEP, *columns).collect()
    pngs = {f"{c}.png": histogram_png(values.select(c, col.KEEP), c, thresholds)
            for c in columns if values[c].null_count() < values.height}
    pngs["reject_reasons.png"] = reasons_png(reason_counts(manifest))
    return pngs


def write_plots(manifest: pl.LazyFrame, thresholds: list[Threshold], out_dir: Path) -> list[Path]:
    paths = []
    for name, data in plot_pngs(manifest, thresholds).items():
        path = out_dir / name
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        paths.append(path)
    return paths
