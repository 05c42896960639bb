"""The review app's in-memory re-pick (``pipelines.tools.review.survivors``) against tune's one-process re-pick.

Each example is a random pair graph (exact stars, caption and pHash links, pairs outside the manifest) and
a walk of settings (eligibility and dedup thresholds moving); after every step the survivors stepped from
an earlier setting must be exactly ``dedup.survivors.duplicates`` over every stored pair -- what tune runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.config import DedupConfig
from dedup.survivors import duplicates, stored_pairs
from manifests import schema as col
from pipelines.tools.review.survivors import KINDS, LiveSurvivors

DETECTORS = ("sha256", "pixel_hash", "minhash", "phash")


def _ids(k: int) -> str:
    return f"s{k:03d}"


@st.composite
def graphs(draw) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(manifest, pairs): up to 14 samples, the last one or two of them paired but outside the manifest."""
    n = draw(st.integers(2, 14))
    outside = draw(st.integers(0, min(2, n - 2)))
    links = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.sampled_from(DETECTORS),
                                    st.sampled_from([0.55, 0.7, 0.8, 0.9, 0.95, 1.0])), min_size=1, max_size=24))
    links = [(min(a, b), max(a, b), d, 1.0 if d in ("sha256", "pixel_hash") else s) for a, b, d, s in links if a != b]
    if not links:
        links = [(0, 1, "phash", 0.9)]
    pairs = pl.DataFrame({"sample_a": [_ids(a) for a, *_ in links], "sample_b": [_ids(b) for _, b, *_ in links],
                          "detector": [d for *_, d, _ in links], "similarity": [s for *_, s in links]},
                         schema={"sample_a": pl.String, "sample_b": pl.String, "detector": pl.String,
                                 "similarity": pl.Float32})
    scores = st.one_of(st.none(), st.sampled_from([1.0, 2.0, 3.0, float("nan")]))
    manifest = pl.DataFrame({col.SAMPLE_ID: [_ids(k) for k in range(n - outside)],
                             col.AESTHETIC_SCORE: [draw(scores) for _ in range(n - outside)],
                             col.CLIP_SCORE: [draw(scores) for _ in range(n - outside)],
                             col.ORIGINAL_WIDTH: [draw(st.sampled_from([10, 20])) for _ in range(n - outside)],
                             col.ORIGINAL_HEIGHT: [10] * (n - outside)},
                            schema={col.SAMPLE_ID: pl.String, col.AESTHETIC_SCORE: pl.Float32,
                                    col.CLIP_SCORE: pl.Float32, col.ORIGINAL_WIDTH: pl.Int32,
                                    col.ORIGINAL_HEIGHT: pl.Int32})
    return manifest, pairs


def _dedup(minhash: float, phash: float, mode: str, exact: bool) -> DedupConfig:
    return DedupConfig.model_validate({"exact": {"enabled": exact}, "minhash": {"enabled": True, "threshold": minhash},
                                       "phash": {"enabled": True, "threshold": phash}, "keep": {"mode": mode}})


settings_walk = st.lists(st.tuples(st.lists(st.booleans(), min_size=14, max_size=14),
                                   st.sampled_from([0.6, 0.8, 0.95]), st.sampled_from([0.6, 0.85, 0.95]),
                                   st.booleans(), st.integers(0, 5)), min_size=1, max_size=5)


def _tune(manifest: pl.DataFrame, files: list[Path], dedup: DedupConfig, eligible: np.ndarray) -> pl.DataFrame:
    """What tune's one-process re-pick writes (``pipelines.run.repick.current_duplicates`` without the run)."""
    frame = manifest.with_columns(pl.Series("ok", eligible)).lazy()
    table = duplicates(frame, stored_pairs(files, dedup), dedup,
                       lambda f: f.select(col.SAMPLE_ID, pl.col("ok").alias(col.KEEP)))
    return table.select(col.SAMPLE_ID, col.DUPLICATE_OF, col.DUP_KIND, col.CLUSTER_ID, col.SIMILARITY, "detector")


@settings(max_examples=150, deadline=None)
@given(graphs(), settings_walk, st.sampled_from(["greedy", "component"]))
def test_stepped_survivors_equal_tunes_re_pick_after_every_move(tmp_path_factory, graph, walk, mode):
    manifest, pairs = graph
    files = [tmp_path_factory.mktemp("pairs") / "pairs.parquet"]
    pairs.write_parquet(files[0])
    live = LiveSurvivors(manifest.lazy(), pairs, Path("/nonexistent/semantic_centroids.parquet"))
    states = []
    for eligible, minhash, phash, exact, start in walk:  # each step from any earlier setting (the app picks the nearest)
        dedup, rows = _dedup(minhash, phash, mode, exact), np.array(eligible[:manifest.height])
        last = live.pick(states[start] if start < len(states) else None, dedup, rows)
        states.append(last)
        want = _tune(manifest, files, dedup, rows)
        got = pl.concat([live.ids.to_frame(), live.columns(last)], how="horizontal")
        expected = live.ids.to_frame().join(want.select(col.SAMPLE_ID, col.DUPLICATE_OF, col.DUP_KIND),
                                            on=col.SAMPLE_ID, how="left", maintain_order="left")
        assert got.equals(expected), (walk, got, expected)
        # a page's rows: cluster()'s own table for the components of the first rows, every column
        page = live.duplicates(last, live.rows < 3, dedup).select(want.columns).sort(col.SAMPLE_ID)
        assert page.equals(want.filter(pl.col(col.SAMPLE_ID).is_in(page[col.SAMPLE_ID].implode())))


def test_a_move_re_picks_only_the_components_it_touches():
    """Two clusters; eligibility moves inside one: the other is never handed to cluster_nodes(), nor is the moved
    one when its best-first order stands. A two-member cluster goes through cluster_nodes()'s vectorised component
    mode when its pairs are new, and not at all when only its eligibility moved."""
    manifest = pl.DataFrame({col.SAMPLE_ID: [_ids(k) for k in range(5)], col.AESTHETIC_SCORE: [1.0, 2.0, 3.0, 4.0, 5.0]})
    pairs = pl.DataFrame({"sample_a": [_ids(0), _ids(1), _ids(3)], "sample_b": [_ids(1), _ids(2), _ids(4)],
                          "detector": ["phash"] * 3, "similarity": [0.9, 0.9, 0.9]},
                         schema_overrides={"similarity": pl.Float32})
    live = LiveSurvivors(manifest.lazy(), pairs, Path("/nonexistent"))
    dedup = _dedup(0.8, 0.85, "greedy", True)
    walked = []
    live._walk = lambda picked, nodes, d, mode: walked.append((np.flatnonzero(nodes).tolist(), mode)) or \
        LiveSurvivors._walk(live, picked, nodes, d, mode)
    first = live.pick(None, dedup, np.ones(5, bool))
    assert walked == [([3, 4], "component"), ([0, 1, 2], "greedy")]  # from nothing: every cluster
    stood = live.pick(first, dedup, np.array([False, True, True, True, True]))  # the last-ranked one: order stands
    assert len(walked) == 2 and stood.survivor.tolist() == first.survivor.tolist()
    moved = live.pick(first, dedup, np.array([True, True, False, True, True]))
    assert walked[2:] == [([0, 1, 2], "greedy")]  # the three-member cluster only
    assert moved.survivor.tolist() == [1, 1, 1, 4, 4] and first.survivor.tolist() == [0, 2, 2, 4, 4]
    swapped = live.pick(moved, dedup, np.array([True, True, False, True, False]))
    assert len(walked) == 3  # the two-member cluster settled without cluster_nodes()
    assert swapped.survivor.tolist() == [1, 1, 1, 3, 3] and KINDS[swapped.kind[4]] == "image"


def test_the_nearest_setting_counts_the_same_pairs_first():
    manifest = pl.DataFrame({col.SAMPLE_ID: [_ids(k) for k in range(4)], col.AESTHETIC_SCORE: [1.0, 2.0, 3.0, 4.0]})
    pairs = pl.DataFrame({"sample_a": [_ids(0), _ids(2)], "sample_b": [_ids(1), _ids(3)],
                          "detector": ["phash", "minhash"], "similarity": [0.9, 0.9]},
                         schema_overrides={"similarity": pl.Float32})
    live = LiveSurvivors(manifest.lazy(), pairs, Path("/nonexistent"))
    low, high = _dedup(0.8, 0.85, "greedy", True), _dedup(0.95, 0.85, "greedy", True)
    everyone, three = np.ones(4, bool), np.array([True, True, True, False])
    near_eligible = live.pick(None, high, three)
    same_pairs = live.pick(None, low, np.zeros(4, bool))
    assert live.nearest([near_eligible, same_pairs], low, everyone) is same_pairs
    assert live.nearest([live.pick(None, low, three), same_pairs], low, everyone).eligible.sum() == 3
    assert live.nearest([same_pairs], _dedup(0.8, 0.85, "component", True), everyone) is None  # another policy
