"""thresher review on a real curated run (stored dedup pairs): counts equal tune with survivors re-picked,
and the reexport the app prints keeps exactly what it showed."""

from __future__ import annotations

import shlex

import polars as pl
import pytest

from manifests.reexport import read_manifest
from pipelines.cli.main import main
from pipelines.tools.commands import run_tune
from pipelines.tools.review import sliders as sl
from pipelines.tools.review.service import Review

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def review(real_run):
    app = Review(real_run, "tester")
    yield app
    app.live.close()


def test_every_slider_is_a_rule_tune_takes_dedup_included(review):
    keys = {s.key for s in review.sliders}
    assert "filters.rules.min_image_side" in keys
    assert any(k.startswith("dedup.") for k in keys), keys  # the demo run stores pairs


def _settings(review) -> list[dict]:
    dedup = next(s for s in review.sliders if s.key.startswith("dedup.") and s.key.endswith(".threshold"))
    return [{}, {"filters.rules.min_image_side": 300}, {dedup.key: min(1.0, dedup.value + 0.1)},
            {"filters.rules.min_caption_words": 4, dedup.key: dedup.low}]


def test_counts_equal_tune_with_survivors_re_picked(review, real_run):
    for setting in _settings(review):
        shown = review.counts(setting)
        assert shown["report"] == run_tune(real_run, shown["overrides"])[0].as_dict(), setting


def test_the_printed_reexport_keeps_what_the_app_showed(review, real_run, tmp_path, capsys):
    setting = _settings(review)[3]
    exported = review.export(setting)
    argv = shlex.split(exported["command"])[1:] + ["--out", str(tmp_path / "export")]
    assert main(argv) == 0
    kept = read_manifest(tmp_path / "export").filter(pl.col("keep")).height
    assert kept == exported["kept"] == review.counts(setting)["report"]["kept_after"]
    assert sl.snippet(exported["overrides"]).startswith("filters:")
