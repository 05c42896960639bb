"""Threshold changes re-pick survivors: every path (decide phase, tune, re-export) re-clusters the
stored pairs under the new rules, and lands where a fresh dedup under those rules lands."""

from __future__ import annotations

from functools import partial

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.cluster import PAIRS_SCHEMA, with_kind
from dedup.config import DedupConfig
from filters.config import FiltersConfig, NsfwConfig
from filters.decide import decide, passes_rules
from manifests import schema as col
from manifests.schema import Status
from support.dedup_reference import check_keep_invariant, with_duplicates

DEDUP = DedupConfig.model_validate({"exact": {"enabled": True}, "phash": {"enabled": True}})


def filters(max_prob: float) -> FiltersConfig:
    return FiltersConfig(nsfw=NsfwConfig(enabled=True, max_prob=max_prob))


def manifest(nsfw: list[float], aesthetic: list[float]) -> pl.DataFrame:
    n = len(nsfw)
    return pl.DataFrame({col.SAMPLE_ID: [f"{i:03d}" for i in range(n)], col.STATUS: [Status.SUCCESS] * n,
                         col.CAPTION: [f"a photo number {i}" for i in range(n)],
                         col.ORIGINAL_WIDTH: [400] * n, col.ORIGINAL_HEIGHT: [300] * n,
                         col.NSFW_PROB: nsfw, col.AESTHETIC_SCORE: aesthetic},
                        schema_overrides={col.NSFW_PROB: pl.Float32, col.AESTHETIC_SCORE: pl.Float32,
                                          col.ORIGINAL_WIDTH: pl.Int32, col.ORIGINAL_HEIGHT: pl.Int32})


def pairs(rows: list[tuple[str, str, str, float]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["sample_a", "sample_b", "detector", "similarity"], orient="row")
    return with_kind(frame.cast({"similarity": pl.Float32})).select(list(PAIRS_SCHEMA))


def redecide(frame: pl.DataFrame, stored: pl.DataFrame | None, config: FiltersConfig) -> pl.DataFrame:
    """The decide phase, tune and re-export in one process: the duplicate columns redone from the stored pairs
    under ``config``'s rules (``dedup.survivors``, as ``pipelines.run.repick.current_duplicates`` does), then
    the decision."""
    lazy = with_duplicates(frame.lazy(), stored, DEDUP, partial(passes_rules, config=config))
    return decide(lazy, config).collect()


def kept(frame: pl.DataFrame) -> set[str]:
    return set(frame.filter(pl.col(col.KEEP))[col.SAMPLE_ID])


def test_a_stricter_rule_that_rejects_the_survivor_repicks_one():
    # 000..003 are copies; 000 has the best aesthetic score but an NSFW probability of 0.3.
    frame = manifest([0.3, 0.05, 0.2, 0.05, 0.0], [9.0, 5.0, 7.0, 4.0, 5.0])
    stored = pairs([("000", "001", "sha256", 1.0), ("000", "002", "sha256", 1.0), ("000", "003", "phash", 0.9)])
    decided = redecide(frame, stored, filters(0.5))
    assert kept(decided) == {"000", "004"}
    stricter = filters(0.1)
    old_way = decide(decided.lazy(), stricter).collect()  # re-applying the stored duplicate columns
    assert kept(old_way) == {"004"}  # the cluster is lost whole
    again = redecide(decided, stored, stricter)  # tune / re-export: from the decided manifest
    fresh = redecide(frame, stored, stricter)  # run --redo dedup: from nothing
    assert kept(again) == kept(fresh) == {"001", "004"}
    assert again.select(fresh.columns).equals(fresh)
    row = again.filter(pl.col(col.SAMPLE_ID) == "003").row(0, named=True)
    assert (row[col.DUPLICATE_OF], row[col.DUP_KIND], row[col.DUP_DETECTOR]) == ("001", "image", "phash")


def test_without_stored_pairs_the_manifest_columns_stand():
    decided = redecide(manifest([0.0, 0.0], [1.0, 2.0]), pairs([("000", "001", "phash", 0.9)]), filters(0.5))
    assert redecide(decided, None, filters(0.5)).equals(decided)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1, width=32), st.sampled_from([1.0, 5.0, 9.0])), min_size=2, max_size=14),
       st.lists(st.tuples(st.integers(0, 13), st.integers(0, 13), st.sampled_from(["sha256", "pixel_hash", "phash"])),
                max_size=20),
       st.floats(0.05, 0.95), st.floats(0.05, 0.95))
def test_any_threshold_path_equals_a_fresh_dedup(samples, links, first, second):
    frame = manifest([s[0] for s in samples], [s[1] for s in samples])
    ids = frame[col.SAMPLE_ID].to_list()
    rows = {(ids[min(i, j)], ids[max(i, j)], d, 1.0 if d != "phash" else 0.9)
            for i, j, d in links if i != j and max(i, j) < len(ids)}
    stored = pairs(sorted(rows)) if rows else pl.DataFrame(schema=PAIRS_SCHEMA)
    before = redecide(frame, stored, filters(first))
    after, fresh = redecide(before, stored, filters(second)), redecide(frame, stored, filters(second))
    assert after.select(fresh.columns).equals(fresh)
    assert check_keep_invariant(stored, DEDUP.thresholds(), pl.Series(sorted(kept(after)), dtype=pl.String)) == []
