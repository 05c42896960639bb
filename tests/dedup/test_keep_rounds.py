"""The greedy keep policy in rounds (``dedup.keep.keep_greedy``) equals the one-by-one walk it replaced
(``support.dedup_reference.keep_greedy_walk``), survivor for survivor, on conflict graphs that stress it:
exact and identical-caption classes, links of every kind between and inside them, chains ranked along
themselves (a round per two links, so the walk after the rounds runs), and a cap of one round."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.keep import MINHASH, PIXELS, ROUNDS, SHA256, Classes, keep_greedy
from manifests.schema import DupKind
from support.dedup_reference import keep_greedy_walk

DETECTOR_KINDS = [(SHA256, DupKind.EXACT), (PIXELS, DupKind.EXACT), ("phash", DupKind.IMAGE),
                  (MINHASH, DupKind.CAPTION), ("semantic", DupKind.SEMANTIC)]


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 40))
    m = draw(st.integers(0, 3 * n))
    a = np.array(draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m)), np.int64)
    b = np.array(draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m)), np.int64)
    picked = draw(st.lists(st.sampled_from(DETECTOR_KINDS), min_size=m, max_size=m))
    detector = np.array([d for d, _ in picked], dtype=object)
    kind = np.array([k for _, k in picked], dtype=object)
    similarity = np.array(draw(st.lists(st.sampled_from([0.9, 1.0]), min_size=m, max_size=m)), float)
    if draw(st.booleans()):  # a chain ranked along itself
        order = np.arange(n)
    else:
        order = np.array(draw(st.permutations(range(n))), np.int64)
    return order, a, b, detector, kind, similarity


def _both(order, a, b, detector, kind, similarity, rounds=ROUNDS):
    classes = Classes.of(len(order), a, b, detector, kind, similarity)
    return keep_greedy(order, classes, a, b, kind, rounds=rounds), keep_greedy_walk(order, classes, a, b, kind)


@settings(max_examples=400, deadline=None)
@given(graphs())
def test_rounds_keep_what_the_walk_keeps_with_the_same_survivors(graph) -> None:
    rounds, walk = _both(*graph)
    np.testing.assert_array_equal(rounds, walk)


@settings(max_examples=300, deadline=None)
@given(graph=graphs(), rounds=st.integers(0, 3))
def test_a_capped_number_of_rounds_then_the_walk_gives_the_same(graph, rounds) -> None:
    capped, walk = _both(*graph, rounds=rounds)
    np.testing.assert_array_equal(capped, walk)


def test_a_long_chain_ranked_along_itself_keeps_every_other_sample() -> None:
    n = 2001
    a, b = np.arange(n - 1), np.arange(1, n)
    kind = np.full(n - 1, DupKind.IMAGE, dtype=object)
    detector = np.full(n - 1, "phash", dtype=object)
    order = np.arange(n)
    classes = Classes.of(n, a, b, detector, kind, np.full(n - 1, 0.95))
    survivor = keep_greedy(order, classes, a, b, kind)
    kept = np.flatnonzero(survivor == np.arange(n))
    np.testing.assert_array_equal(kept, np.arange(0, n, 2))
    np.testing.assert_array_equal(survivor[1::2], np.arange(0, n - 1, 2))  # each dropped one: its better neighbour
