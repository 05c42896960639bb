"""The keep invariant: whatever the pair layout, ranks, eligibility and split, no two kept samples are
an exact group or a counted pair, and every dropped sample points at a kept one."""

from __future__ import annotations

import itertools
import random

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.cluster import PAIRS_SCHEMA, cluster, with_kind
from dedup.cluster import equal_key_pairs
from dedup.keep import union_find
from support.dedup_reference import ELIGIBLE, check_keep_invariant
from manifests import schema as col

THRESHOLDS = {"sha256": 1.0, "pixel_hash": 1.0, "minhash": 0.8, "phash": 0.85, "sscd": 0.75}
ORDER = (ELIGIBLE, col.AESTHETIC_SCORE)
LAYOUTS = ("star", "chain", "clique")


def as_pairs(rows: list[tuple[str, str, str, float]]) -> pl.DataFrame:
    rows = sorted({(min(a, b), max(a, b), d, s) for a, b, d, s in rows if a != b})
    frame = pl.DataFrame(rows, schema=["sample_a", "sample_b", "detector", "similarity"], orient="row")
    return with_kind(frame.cast({"similarity": pl.Float32})).select(list(PAIRS_SCHEMA))


def laid_out(members: list[str], layout: str, detector: str, rng: random.Random) -> list[tuple]:
    """An equivalence class's pairs as a star (around a random member), a chain (random order) or a clique."""
    members = rng.sample(members, len(members))
    if layout == "star":
        links = [(members[0], m) for m in members[1:]]
    elif layout == "chain":
        links = list(zip(members, members[1:]))
    else:
        links = list(itertools.combinations(members, 2))
    return [(a, b, detector, 1.0) for a, b in links]


def classes(labels: dict[str, int]) -> list[list[str]]:
    by = {}
    for sid, label in labels.items():
        by.setdefault(label, []).append(sid)
    return [sorted(m) for m in by.values() if len(m) > 1]


@st.composite
def graphs(draw):
    n = draw(st.integers(2, 24))
    ids = [f"s{i:02d}" for i in range(n)]
    sha = dict(zip(ids, draw(st.lists(st.integers(0, n // 2), min_size=n, max_size=n))))
    merge = draw(st.lists(st.integers(0, n // 3), min_size=n // 2 + 1, max_size=n // 2 + 1))
    pixels = {s: merge[label] for s, label in sha.items()}  # same bytes -> same pixels, not the reverse
    caption = dict(zip(ids, draw(st.lists(st.integers(0, n), min_size=n, max_size=n))))  # identical signatures
    index = st.integers(0, n - 1)
    approx = draw(st.lists(st.tuples(index, index, st.sampled_from(["phash", "sscd", "minhash"]),
                                     st.sampled_from([0.7, 0.8, 0.86, 0.95])), max_size=3 * n))
    scores = pl.DataFrame({col.SAMPLE_ID: ids,
                           ELIGIBLE: draw(st.lists(st.booleans(), min_size=n, max_size=n)),
                           col.AESTHETIC_SCORE: draw(st.lists(st.sampled_from([None, 1.0, 2.0, 3.0, float("nan")]),
                                                              min_size=n, max_size=n))}, strict=False)
    keys = pl.DataFrame({col.SAMPLE_ID: ids, col.SHA256: [f"b{sha[s]}" for s in ids],
                         col.PIXEL_HASH: [f"p{pixels[s]}" for s in ids], "caption_class": [caption[s] for s in ids]})
    approx = [(ids[i], ids[j], d, s) for i, j, d, s in approx]
    return ids, keys, approx, scores, draw(st.randoms(use_true_random=False))


def pairs_of(keys: pl.DataFrame, approx: list[tuple], layout: str, rng: random.Random) -> pl.DataFrame:
    rows = list(approx)
    for column, detector in ((col.SHA256, "sha256"), (col.PIXEL_HASH, "pixel_hash"), ("caption_class", "minhash")):
        for members in classes(dict(keys.select(col.SAMPLE_ID, column).iter_rows())):
            rows += laid_out(members, layout, detector, rng)
    return as_pairs(rows)


def kept_of(out: pl.DataFrame, ids: list[str]) -> pl.Series:
    dropped = set(out.filter(pl.col(col.DUPLICATE_OF).is_not_null())[col.SAMPLE_ID])
    return pl.Series([s for s in ids if s not in dropped])


def assert_invariant(out: pl.DataFrame, pairs: pl.DataFrame, ids: list[str], keys: pl.DataFrame,
                     scores: pl.DataFrame) -> None:
    kept = kept_of(out, ids)
    # The stored pairs, and the same equivalences written out as cliques, have no two kept ends.
    cliques = pairs_of(keys, [], "clique", random.Random(0))
    assert check_keep_invariant(pl.concat([pairs, cliques]), THRESHOLDS, kept, keys) == []
    dropped = out.filter(pl.col(col.DUPLICATE_OF).is_not_null())
    assert set(dropped[col.DUPLICATE_OF]) <= set(kept)
    assert (dropped[col.DUPLICATE_OF] == dropped[col.KEPT_SAMPLE_ID]).all()
    assert dropped[col.DUP_KIND].null_count() == 0 and dropped[col.SIMILARITY].null_count() == 0
    # A cluster with an eligible sample keeps an eligible one: another rule never costs the whole cluster.
    eligible = set(scores.filter(pl.col(ELIGIBLE))[col.SAMPLE_ID])
    for members in out.group_by(col.CLUSTER_ID).agg(col.SAMPLE_ID)[col.SAMPLE_ID]:
        if eligible & set(members):
            assert eligible & set(members) & set(kept)


@settings(max_examples=80, deadline=None)
@given(graphs(), st.sampled_from(LAYOUTS), st.integers(1, 5))
def test_keep_invariant_over_random_graphs_layouts_and_splits(graph, layout, parts):
    ids, keys, approx, scores, rng = graph
    pairs = pairs_of(keys, approx, layout, rng)
    for mode in ("greedy", "component"):
        out = cluster(pairs, THRESHOLDS, scores, ORDER, mode)
        assert_invariant(out, pairs, ids, keys, scores)
        if mode == "component":
            assert len(set(kept_of(out, ids)) & set(out[col.SAMPLE_ID])) == out[col.CLUSTER_ID].n_unique()
        # Another layout of the same equivalences, and the pair rows split in parts and shuffled, change nothing.
        other = pairs_of(keys, approx, rng.choice(LAYOUTS), rng)
        chunks = np.array_split(rng.sample(range(other.height), other.height), parts)
        split = pl.concat([other[list(c)] for c in chunks if len(c)] or [other])
        assert cluster(split, THRESHOLDS, scores.sample(fraction=1.0, shuffle=True, seed=1), ORDER, mode).equals(out)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=2, max_size=40), st.integers(1, 7), st.randoms(use_true_random=False))
def test_exact_pairs_do_not_depend_on_the_shard_split(labels, parts, rng):
    """equal_key_pairs over the rows split into ``parts`` files in any order: the same pairs, one class each."""
    rows = pl.DataFrame({col.SAMPLE_ID: [f"{i:03d}" for i in range(len(labels))],
                         col.SHA256: [f"h{x}" if x else None for x in labels]})
    order = rng.sample(range(rows.height), rows.height)
    shards = [rows[list(c)].lazy() for c in np.array_split(order, parts) if len(c)]
    pairs = equal_key_pairs(pl.concat(shards), col.SHA256, "sha256")
    assert pairs.sort("sample_a", "sample_b").equals(equal_key_pairs(rows.lazy(), col.SHA256, "sha256")
                                                     .sort("sample_a", "sample_b"))
    out = cluster(pairs, THRESHOLDS)
    assert check_keep_invariant(pairs, THRESHOLDS, kept_of(out, rows[col.SAMPLE_ID].to_list()), rows) == []


def star_with_rejected_centre() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The bug from the field: one image under many URLs (a sha256 star around the smallest id), a
    pixel-identical sibling, and the centre rejected by another rule (or dropped by another detector)."""
    ids = [f"{i:03d}" for i in range(12)]
    rows = [("000", s, "sha256", 1.0) for s in ids[1:10]] + [("000", "010", "pixel_hash", 1.0)]
    rows += [("000", "011", "phash", 0.9)]  # the centre is also a near-duplicate of a better picture
    scores = pl.DataFrame({col.SAMPLE_ID: ids, ELIGIBLE: [False] + [True] * 11,
                           col.AESTHETIC_SCORE: [9.0] + [5.0] * 10 + [6.0]})
    return as_pairs(rows), scores


def test_star_whose_centre_another_rule_rejects_keeps_one():
    pairs, scores = star_with_rejected_centre()
    for mode in ("greedy", "component"):
        out = cluster(pairs, THRESHOLDS, scores, ORDER, mode)
        kept = set(out.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID])
        assert kept == {"011"}, (mode, kept)  # the sibling and the nine copies all duplicate "011"
        leaf = out.filter(pl.col(col.SAMPLE_ID) == "005").row(0, named=True)
        assert (leaf[col.DUPLICATE_OF], leaf[col.DUP_KIND], leaf["detector"]) == ("011", "image", "phash")
    # Without the pHash link, the eligible copy ranked first survives; the rejected centre is passed over.
    out = cluster(pairs.filter(pl.col("detector") != "phash"), THRESHOLDS, scores, ORDER)
    assert out.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID].to_list() == ["001"]
    sibling = out.filter(pl.col(col.SAMPLE_ID) == "010").row(0, named=True)
    assert (sibling[col.DUP_KIND], sibling["detector"], sibling[col.SIMILARITY]) == ("exact", "pixel_hash", 1.0)
    assert out.filter(pl.col(col.SAMPLE_ID) == "002")["detector"].item() == "sha256"


def test_identical_captions_in_a_star_keep_one_and_do_not_cross_pictures():
    # An LSH bucket's identical captions are a star around its first member; that member's picture
    # is a copy of a better one. One of the others is kept, not all of them.
    rows = [("a", x, "minhash", 1.0) for x in "bcde"] + [("a", "z", "phash", 0.95)]
    scores = pl.DataFrame({col.SAMPLE_ID: list("abcdez"), col.AESTHETIC_SCORE: [1.0, 2.0, 3.0, 4.0, 5.0, 9.0]})
    out = cluster(as_pairs(rows), THRESHOLDS, scores)
    assert out.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID].to_list() == ["e", "z"]
    # Same bytes under another caption: a caption link of one row does not drop the picture.
    rows = [("a", "b", "sha256", 1.0), ("b", "c", "minhash", 0.9)]
    scores = pl.DataFrame({col.SAMPLE_ID: list("abc"), col.AESTHETIC_SCORE: [5.0, 4.0, 3.0]})
    out = cluster(as_pairs(rows), THRESHOLDS, scores)
    assert out.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID].to_list() == ["a", "c"]


def test_check_keep_invariant_reports_violations():
    pairs, _ = star_with_rejected_centre()
    keys = pl.DataFrame({col.SAMPLE_ID: ["001", "002", "011"], col.SHA256: ["x", "x", "y"]})
    problems = check_keep_invariant(pairs, THRESHOLDS, pl.Series(["000", "011", "001", "002"]), keys)
    assert any("000 and 011 are a phash pair" in p for p in problems)
    assert any("share sha256 x" in p for p in problems)
    assert check_keep_invariant(pairs, THRESHOLDS, pl.Series(["011", "001"]), keys) == []
    assert union_find(3, np.array([0]), np.array([2])).tolist() == [0, 1, 0]
