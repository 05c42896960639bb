"""Clusters and the keep policy: pure functions of pairs, thresholds and scores."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dedup.cluster import PAIRS_SCHEMA, cluster, cluster_counts, union_find, with_kind
from manifests import schema as col

THRESHOLDS = {"sha256": 1.0, "pixel_hash": 1.0, "minhash": 0.8, "phash": 0.85, "sscd": 0.75}


def pairs(rows: list[tuple[str, str, str, float]]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["sample_a", "sample_b", "detector", "similarity"], orient="row")
    return with_kind(frame.cast({"similarity": pl.Float32})).select(list(PAIRS_SCHEMA))


def test_union_find_roots_are_component_minimum():
    rng = np.random.default_rng(0)
    n = 500
    a, b = rng.integers(0, n, 300), rng.integers(0, n, 300)
    roots = union_find(n, a, b)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(coo_matrix((np.ones(300), (a, b)), shape=(n, n)), directed=False)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        assert (roots[members] == members.min()).all()


def test_keep_policy_prefers_aesthetic_then_clip_then_resolution_then_id():
    p = pairs([("a", "b", "sha256", 1.0), ("b", "c", "sha256", 1.0), ("c", "d", "sha256", 1.0)])
    scores = pl.DataFrame({col.SAMPLE_ID: ["a", "b", "c", "d"], col.AESTHETIC_SCORE: [5.0, 6.0, 6.0, None],
                           col.CLIP_SCORE: [0.3, 0.2, 0.2, 0.9], "resolution": [10, 20, 30, 99]})
    out = cluster(p, THRESHOLDS, scores, mode="component")
    assert set(out["kept_sample_id"]) == {"c"} and set(out[col.CLUSTER_ID]) == {"c"}  # the survivor's group
    assert out.filter(pl.col(col.SAMPLE_ID) == "c")[col.DUPLICATE_OF].item() is None
    assert out.filter(pl.col(col.DUPLICATE_OF).is_not_null())[col.DUP_KIND].to_list() == ["exact"] * 3
    no_scores = cluster(p, THRESHOLDS, None, mode="component")
    assert set(no_scores["kept_sample_id"]) == {"a"}


def test_a_survivor_that_fails_other_rules_is_passed_over():
    # "b" has the best aesthetic score but another rule rejects it (eligible False): keeping it
    # would leave the cluster with no sample in the training set.
    from support.dedup_reference import ELIGIBLE

    p = pairs([("a", "b", "sha256", 1.0), ("b", "c", "sha256", 1.0)])
    scores = pl.DataFrame({col.SAMPLE_ID: ["a", "b", "c"], ELIGIBLE: [True, False, True],
                           col.AESTHETIC_SCORE: [5.0, 9.0, 6.0]})
    for mode in ("component", "greedy"):
        out = cluster(p, THRESHOLDS, scores, order=(ELIGIBLE, col.AESTHETIC_SCORE), mode=mode)
        kept = set(out.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID])
        assert "b" not in kept and "c" in kept, mode


def test_thresholds_recluster_from_stored_pairs():
    p = pairs([("a", "b", "minhash", 0.82), ("c", "d", "sscd", 0.7), ("e", "f", "phash", 0.9)])
    assert set(cluster(p, THRESHOLDS)[col.SAMPLE_ID]) == {"a", "b", "e", "f"}
    looser = {**THRESHOLDS, "sscd": 0.65, "minhash": 0.9}
    assert set(cluster(p, looser)[col.SAMPLE_ID]) == {"c", "d", "e", "f"}
    with pytest.raises(ValueError, match="no threshold"):
        cluster(p, {"minhash": 0.8})


def test_greedy_keeps_both_ends_of_a_chain_component_keeps_one():
    # b shows a's picture under c's caption: a and c are distinct samples linked only through b.
    p = pairs([("a", "b", "phash", 0.95), ("b", "c", "minhash", 0.9)])
    scores = pl.DataFrame({col.SAMPLE_ID: ["a", "b", "c"], col.AESTHETIC_SCORE: [5.0, 4.0, 3.0]})
    greedy = cluster(p, THRESHOLDS, scores)
    assert greedy.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID].to_list() == ["a", "c"]
    b = greedy.filter(pl.col(col.SAMPLE_ID) == "b").row(0, named=True)
    assert (b[col.DUPLICATE_OF], b[col.DUP_KIND], b["similarity"]) == ("a", "image", pytest.approx(0.95))
    component = cluster(p, THRESHOLDS, scores, mode="component")
    assert component.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID].to_list() == ["a"]
    c = component.filter(pl.col(col.SAMPLE_ID) == "c").row(0, named=True)
    assert (c[col.DUPLICATE_OF], c[col.DUP_KIND]) == ("a", "caption")  # its strongest link, not to a


def test_a_chain_of_distinct_pictures_is_not_one_cluster():
    # A~B~C~D are four distinct pictures, each pair of neighbours counted, A-C and B-D not: one
    # connected component, but greedy keeps A and C, so cluster_id (the survivor) splits it in two.
    p = pairs([("A", "B", "phash", 0.9), ("B", "C", "sscd", 0.8), ("C", "D", "phash", 0.9)])
    out = cluster(p, THRESHOLDS)
    assert dict(out.select(col.SAMPLE_ID, col.CLUSTER_ID).iter_rows()) == {"A": "A", "B": "A", "C": "C", "D": "C"}
    assert (out[col.CLUSTER_ID] == out["kept_sample_id"]).all()
    assert cluster_counts(out)["clusters"] == 2
    # A kept sample whose only link is to another group's dropped sample has its own row, but is no cluster.
    lone = cluster(pairs([("A", "B", "phash", 0.9), ("B", "C", "sscd", 0.8)]), THRESHOLDS)
    assert dict(lone.select(col.SAMPLE_ID, col.CLUSTER_ID).iter_rows()) == {"A": "A", "B": "A", "C": "C"}
    assert cluster_counts(lone) == {"clusters": 1, "kept_in_clusters": 2, "duplicates": 1, "by_kind": {"image": 1}}
    assert set(cluster(p, THRESHOLDS, mode="component")[col.CLUSTER_ID]) == {"A"}  # one survivor per component


@pytest.mark.parametrize("mode", ["greedy", "component"])
def test_result_does_not_depend_on_pair_order(mode):
    rng = np.random.default_rng(5)
    ids = [f"{i:05d}" for i in range(400)]
    rows = []
    for _ in range(600):
        i, j = sorted(rng.choice(400, 2, replace=False))
        det = rng.choice(["sha256", "minhash", "phash", "sscd"])
        rows.append((ids[i], ids[j], str(det), float(rng.uniform(0.7, 1.0)) if det != "sha256" else 1.0))
    scores = pl.DataFrame({col.SAMPLE_ID: ids, col.AESTHETIC_SCORE: rng.integers(0, 4, 400).astype(float)})
    first = cluster(pairs(rows), THRESHOLDS, scores, mode=mode)
    for seed in range(3):
        shuffled = [rows[k] for k in np.random.default_rng(seed).permutation(len(rows))]
        again = cluster(pairs(shuffled), THRESHOLDS, scores.sample(fraction=1.0, shuffle=True, seed=seed), mode=mode)
        assert again.equals(first)
    kept = set(first.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID])
    if mode == "component":
        assert len(kept) == first[col.CLUSTER_ID].n_unique()
    else:  # no two kept samples are linked by a counted pair
        counted = pairs(rows).filter(pl.col("similarity") >= pl.col("detector").replace_strict(THRESHOLDS))
        assert not any(a in kept and b in kept for a, b in counted.select("sample_a", "sample_b").iter_rows())
