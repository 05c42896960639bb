"""The evaluation set of bench/neardup_eval.py: splits that share no original, report edits in their stated
ranges, distinct negatives, and the evaluator's cluster precision on a chain of two groups."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
from hypothesis import given, settings, strategies as st

from bench.neardup_metrics import Label, cluster_metrics, pair_metrics
from support.evalset import (REPORT_RANGES, _distinct, _thumb, hard_originals, linear_gradient, low_texture_negatives,
                             report_edits, split_of, split_originals)


def test_the_splits_share_no_original():
    tune, report = split_originals("tune", per_type=2), split_originals("report", per_type=2)
    assert tune and report and not set(tune) & set(report)
    assert {kind for _, kind in tune.values()} == {kind for _, kind in report.values()}  # every type in both
    assert all(split_of(name) == "tune" for name in tune) and all(split_of(name) == "report" for name in report)
    tune_pixels = {np.asarray(img).tobytes() for img, _ in tune.values()}
    assert not any(np.asarray(img).tobytes() in tune_pixels for img, _ in report.values())


def test_hard_originals_are_deterministic_and_bounded():
    a, b = hard_originals("report", seed=3, per_type=1), hard_originals("report", seed=3, per_type=1)
    assert list(a) == list(b)
    assert all(np.array_equal(np.asarray(a[k][0]), np.asarray(b[k][0])) for k in a)
    assert all(max(img.size) <= 512 for img, _ in a.values())


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([(96, 64), (64, 96), (80, 80)]))
def test_report_edit_parameters_lie_in_the_stated_ranges(seed, size):
    img = linear_gradient((200, 40, 40), (20, 40, 220), 0.7, size)
    edits = report_edits(img, random.Random(seed))
    assert set(REPORT_RANGES) <= set(edits)
    for name, ranges in REPORT_RANGES.items():
        for param, (lo, hi) in ranges.items():
            assert lo <= edits[name].params[param] <= hi, (name, param, edits[name].params)
    assert abs(edits["bright"].params["brightness"] - 1) >= 0.15 and abs(edits["gamma"].params["gamma"] - 1) >= 0.2
    assert edits["crop80_off"].params["shift"] >= 0.5  # off-centre by at least half the largest shift
    for name in ("crop80_off", "crop60_any", "crop_any"):
        crop, fraction = edits[name].image, edits[name].params["fraction"]
        assert crop.size == (round(size[0] * fraction), round(size[1] * fraction))
    assert edits["resize"].image.size == tuple(max(1, round(s * edits["resize"].params["scale"])) for s in size)


def test_negatives_are_distinct_and_recolours_share_a_design():
    negatives = low_texture_negatives(seed=1, n=40, recolour_every=3)
    assert sum(not name.endswith("_recolour") for name in negatives) == 40
    twins = {name: neg for name, neg in negatives.items() if name.endswith("_recolour")}
    assert twins and all(neg.design == name.removesuffix("_recolour") for name, neg in twins.items())
    thumbs = np.stack([_thumb(neg.image) for neg in negatives.values()])
    for k, neg in enumerate(negatives.values()):
        twin = [j for j, other in enumerate(negatives.values()) if other.design == neg.design and j != k]
        assert _distinct(thumbs[k], np.delete(thumbs, [k, *twin], axis=0))


def chain_labels() -> dict[str, Label]:
    return {"a0": Label("A", "original", "photo"), "a1": Label("A", "resize", "photo"),
            "b0": Label("B", "original", "photo"), "b1": Label("B", "resize", "photo")}


def test_a_chain_that_joins_two_groups_has_cluster_precision_below_one():
    labels = chain_labels()
    chained = cluster_metrics(dict.fromkeys(labels, "c"), labels)
    assert chained["cluster_precision"] == round(2 / 6, 4) and chained["cluster_recall"] == 1.0
    assert chained["mixed_clusters"] == 1 and chained["largest_cluster"] == 4
    apart = cluster_metrics({"a0": "x", "a1": "x", "b0": "y", "b1": "y"}, labels)
    assert apart["cluster_precision"] == 1.0 and apart["cluster_recall"] == 1.0 and apart["mixed_clusters"] == 0
    lost = cluster_metrics({"a0": "x", "a1": "x", "b0": None, "b1": None}, labels)
    assert lost["cluster_precision"] == 1.0 and lost["cluster_recall"] == 0.5


def test_pair_metrics_count_recolours_apart():
    labels = {**chain_labels(), "n0": Label("neg:n0", "negative", "neg_mark", "n0"),
              "n1": Label("neg:n1", "negative", "neg_mark", "n0"), "n2": Label("neg:n2", "negative", "neg_flat", "n2")}
    pairs = pl.DataFrame({"url_a": ["a0", "a1", "n0", "n0"], "url_b": ["a1", "b0", "n1", "n2"],
                          "detector": ["pdq"] * 4, "similarity": [0.95, 0.9, 1.0, 0.9]})
    r = pair_metrics(pairs, labels, "report")
    assert (r["true_pairs"], r["false_pairs"], r["recolour_false_pairs"], r["negative_false_pairs"]) == (1, 3, 1, 1)
    assert r["precision"] == 0.25 and r["precision_recolours_excluded"] == round(1 / 3, 4)
    assert r["recall_per_edit"]["resize"] == 0.5 and r["recall_main"] == 0.5  # A's resize found, B's not
