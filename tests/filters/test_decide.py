"""The decision, in one place: a pure function of the manifest's columns and the thresholds, property-tested
against an independent DuckDB query with the same thresholds."""

from __future__ import annotations

import math

import duckdb
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filters.config import AestheticConfig, ClipScorerConfig, FiltersConfig, NsfwConfig, RulesConfig, ThresholdRule
from filters.decide import decide
from manifests import schema as col
from manifests.schema import Reason, Status

scores = st.one_of(st.none(), st.just(math.nan), st.floats(-1, 1), st.sampled_from([0.28, 0.5, 0.3]))
aesthetic = st.one_of(st.none(), st.just(math.nan), st.floats(0, 10), st.sampled_from([5.0, 6.0]))
rows = st.lists(st.tuples(
    st.sampled_from([Status.SUCCESS, Status.SUCCESS, Status.FAILED_TO_DOWNLOAD, Status.NOT_AN_IMAGE]),
    st.one_of(st.none(), st.text(alphabet="ab ", max_size=12)),
    st.integers(1, 800), st.integers(1, 800), scores, aesthetic, scores.map(lambda v: v if v is None else abs(v)),
), max_size=20)
configs = st.builds(
    lambda words, chars, side, ratio, clip, aes, nsfw: FiltersConfig(
        rules=RulesConfig(min_caption_words=words, min_caption_chars=chars, min_image_side=side,
                          max_aspect_ratio=ratio),
        clip=ClipScorerConfig(enabled=True, min_score=clip), aesthetic=AestheticConfig(enabled=True, min_score=aes),
        nsfw=NsfwConfig(enabled=True, max_prob=nsfw)),
    st.integers(0, 3), st.integers(0, 8), st.integers(0, 400), st.floats(1, 4),
    st.one_of(st.none(), st.floats(-1, 1)), st.one_of(st.none(), st.floats(0, 10)),
    st.one_of(st.none(), st.floats(0, 1)),
)


def manifest(data: list[tuple]) -> pl.DataFrame:
    names = [col.STATUS, col.CAPTION, col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT, col.CLIP_SCORE,
             col.AESTHETIC_SCORE, col.NSFW_PROB]
    schema = {col.STATUS: pl.String, col.CAPTION: pl.String, col.ORIGINAL_WIDTH: pl.Int32,
              col.ORIGINAL_HEIGHT: pl.Int32, col.CLIP_SCORE: pl.Float64, col.AESTHETIC_SCORE: pl.Float64,
              col.NSFW_PROB: pl.Float64}
    frame = pl.DataFrame([dict(zip(names, r)) for r in data], schema=schema)
    return frame.with_columns(pl.format("{}", pl.int_range(pl.len())).alias(col.SAMPLE_ID))


def score_ok(column: str, op: str, value: float | None) -> str:
    """No score, a NaN score (not scored) or no threshold passes; otherwise compare."""
    if value is None:
        return "TRUE"
    return f"({column} IS NULL OR isnan({column}) OR {column} {op} {value!r}::DOUBLE)"


def duckdb_kept(frame: pl.DataFrame, config: FiltersConfig) -> set[str]:
    r = config.rules
    caption = "trim(coalesce(caption, ''))"
    short, long = "least(original_width, original_height)", "greatest(original_width, original_height)"
    query = f"""
        SELECT sample_id FROM frame
        WHERE status = 'success'
          AND (caption IS NULL  -- no caption source: the caption rules do not apply (issue 17)
               OR (len(regexp_extract_all({caption}, '\\S+')) >= {r.min_caption_words}
                   AND length({caption}) >= {r.min_caption_chars}))
          AND {short} >= {r.min_image_side}
          AND {long} <= {r.max_aspect_ratio!r}::DOUBLE * {short}
          AND {score_ok('clip_score', '>=', config.clip.min_score)}
          AND {score_ok('aesthetic_score', '>=', config.aesthetic.min_score)}
          AND {score_ok('nsfw_prob', '<', config.nsfw.max_prob)}
    """
    return {row[0] for row in duckdb.sql(query).fetchall()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, configs)
def test_kept_set_equals_duckdb_query(data, config):
    frame = manifest(data)
    decided = decide(frame, config).collect()
    kept = set(decided.filter(pl.col(col.KEEP))[col.SAMPLE_ID].to_list())
    assert kept == duckdb_kept(frame, config)
    assert decided.height == frame.height
    # NaN "not scored" is null in the manifest.
    for name in (col.CLIP_SCORE, col.AESTHETIC_SCORE, col.NSFW_PROB):
        assert not decided[name].is_nan().any()


def test_every_applicable_reason_is_listed():
    frame = manifest([(Status.SUCCESS, "a photo of a cat", 400, 400, 0.1, 3.0, 0.9)])
    config = FiltersConfig(clip=ClipScorerConfig(enabled=True), aesthetic=AestheticConfig(enabled=True, min_score=5),
                           nsfw=NsfwConfig(enabled=True))
    reasons = decide(frame, config).collect()[col.REJECT_REASONS].to_list()[0]
    assert sorted(reasons) == ["aesthetic_low", "clip_score_low", "nsfw"]


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


def test_every_applicable_rule_reason_is_listed():
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
    frame = pl.DataFrame({col.SAMPLE_ID: ["a", "b", "c"], col.STATUS: ["success"] * 3,
                          col.CAPTION: [None, "", "two words"], col.ORIGINAL_WIDTH: [500] * 3,
                          col.ORIGINAL_HEIGHT: [500] * 3})
    out = decide(frame, FiltersConfig()).collect()
    assert out[col.REJECT_REASONS].to_list() == [[], [Reason.CAPTION_TOO_SHORT], []]
