"""thresher plots: one histogram per score present, thresholds drawn, kept/rejected coloured; reasons bar chart."""

from __future__ import annotations

import io

import polars as pl
from matplotlib.colors import to_hex
from PIL import Image

from manifests import plots
from manifests import schema as col
from manifests.plots import Threshold
from manifests.reexport import read_manifest
from pipelines.cli.main import main


def test_cli_writes_every_score_histogram(synthetic_run, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plots", str(synthetic_run), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["clip_score.png", "aesthetic_score.png", "nsfw_prob.png", "dup_similarity.png",
                            "reject_reasons.png"])
    for path in out.iterdir():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 600
    assert str(out / "clip_score.png") in capsys.readouterr().out


def test_histogram_draws_threshold_and_colours(synthetic_run):
    values = read_manifest(synthetic_run).select(col.CLIP_SCORE, col.KEEP)
    line = Threshold(col.CLIP_SCORE, 0.3, "min clip_score_low")
    other = Threshold(col.NSFW_PROB, 0.5, "max nsfw")
    ax = plots.histogram_figure(values, col.CLIP_SCORE, [line, other]).axes[0]
    assert [list(l.get_xdata()) for l in ax.lines] == [[0.3, 0.3]]  # only this score's threshold
    colours = {to_hex(p.get_facecolor()) for p in ax.patches}
    assert colours == {plots.KEPT_COLOUR, plots.REJECTED_COLOUR}
    heights = sum(p.get_height() for p in ax.patches)
    assert heights == values[col.CLIP_SCORE].drop_nulls().len()  # every non-null score, stacked once


def test_absent_scores_get_no_histogram():
    frame = pl.DataFrame({col.SAMPLE_ID: ["a", "b"], col.KEEP: [True, False],
                          col.REJECT_REASONS: [[], ["image_too_small"]],
                          col.CLIP_SCORE: pl.Series([None, None], dtype=pl.Float32)})
    pngs = plots.plot_pngs(frame.lazy(), [])
    assert list(pngs) == ["reject_reasons.png"]
    Image.open(io.BytesIO(pngs["reject_reasons.png"])).verify()
