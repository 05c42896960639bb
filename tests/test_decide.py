"""The decision is a pure function of the manifest's columns and the thresholds."""

from __future__ import annotations

import polars as pl

from filters.config import FiltersConfig, RulesConfig
from filters.decide import ThresholdRule, decide
from manifests import schema as col
from manifests.schema import Reason, Status


def _frame(**columns) -> pl.DataFrame:
    base = {
        col.SAMPLE_ID: ["a", "b", "c", "d"],
        col.STATUS: [Status.SUCCESS, Status.SUCCESS, Status.FAILED_TO_DOWNLOAD, Status.SUCCESS],
        col.CAPTION: ["a dog on a beach", "x", "a cat on a sofa", "  "],
        col.ORIGINAL_WIDTH: [640, 100, None, 1200],
        col.ORIGINAL_HEIGHT: [480, 100, None, 300],
    }
    return pl.DataFrame({**base, **columns})


def _decided(frame: pl.DataFrame, config: FiltersConfig = FiltersConfig()) -> dict[str, list[str]]:
    out = decide(frame, config).collect()
    assert out[col.KEEP].to_list() == [len(r) == 0 for r in out[col.REJECT_REASONS].to_list()]
    return dict(zip(out[col.SAMPLE_ID], out[col.REJECT_REASONS].to_list()))


def test_every_applicable_reason_is_listed():
    reasons = _decided(_frame())
    assert reasons["a"] == []
    assert reasons["b"] == [Reason.CAPTION_TOO_SHORT, Reason.IMAGE_TOO_SMALL]
    assert reasons["c"] == [Reason.for_status(Status.FAILED_TO_DOWNLOAD)]  # no image rules without an image
    assert reasons["d"] == [Reason.CAPTION_TOO_SHORT, Reason.ASPECT_RATIO]


def test_thresholds_come_from_config():
    lenient = FiltersConfig(rules=RulesConfig(min_caption_words=0, min_caption_chars=0, min_image_side=50,
                                              max_aspect_ratio=5))
    assert _decided(_frame(), lenient) == {"a": [], "b": [], "c": ["status:failed_to_download"], "d": []}


def test_duplicates_get_their_kind_as_reason():
    frame = _frame(**{col.DUPLICATE_OF: [None, None, None, "a"], col.DUP_KIND: [None, None, None, "image"]})
    lenient = FiltersConfig(rules=RulesConfig(min_caption_words=0, min_caption_chars=0, max_aspect_ratio=5))
    assert _decided(frame, lenient)["d"] == [Reason.DUPLICATE_IMAGE]


def test_threshold_rule_treats_null_as_unjudged():
    frame = pl.DataFrame({"s": [0.1, 0.5, None, 0.9]})
    low = ThresholdRule("s", "low", minimum=0.3)
    high = ThresholdRule("s", "high", maximum=0.9)
    assert frame.select(low.violated()).to_series().to_list() == [True, False, False, False]
    assert frame.select(high.violated()).to_series().to_list() == [False, False, False, True]


def test_decide_replaces_an_earlier_decision():
    first = decide(_frame(), FiltersConfig()).collect()
    again = decide(first, FiltersConfig()).collect()
    assert again.columns.count(col.KEEP) == 1
    assert again[col.REJECT_REASONS].to_list() == first[col.REJECT_REASONS].to_list()


def test_caption_rules_skip_rows_without_a_caption_source():
    import polars as pl

    from filters.config import FiltersConfig
    from filters.decide import decide
    from manifests import schema as col

    frame = pl.DataFrame({col.SAMPLE_ID: ["a", "b", "c"], col.STATUS: ["success"] * 3,
                          col.CAPTION: [None, "", "two words"], col.ORIGINAL_WIDTH: [500] * 3,
                          col.ORIGINAL_HEIGHT: [500] * 3})
    out = decide(frame, FiltersConfig()).collect()
    assert out[col.REJECT_REASONS].to_list() == [[], [col.Reason.CAPTION_TOO_SHORT], []]
