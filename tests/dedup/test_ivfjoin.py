"""The IVF self-join: equal to brute force when every list is probed, whatever the block size; the k cap."""

from __future__ import annotations

import numpy as np
import pytest

from dedup import ivfjoin
from dedup.cluster import union_find
from dedup.config import SearchConfig
from dedup.search import float_pairs


def clustered(n: int = 1500, d: int = 32, seed: int = 0) -> np.ndarray:
    """Rows around 30 centres plus 40 near-copies of one row: crowded lists and many pairs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, d))
    x = centres[rng.integers(0, 30, n)] + rng.normal(scale=0.6, size=(n, d))
    x[-40:] = x[0] + rng.normal(scale=0.05, size=(40, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    a, b = np.nonzero(np.triu(x @ x.T >= threshold, k=1))
    return set(zip(a.tolist(), b.tolist()))


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_all_probes_equal_brute_force_for_any_block_size(monkeypatch, block):
    monkeypatch.setattr(ivfjoin, "_BLOCK", block)
    x = clustered()
    config = SearchConfig(use_gpu=False, exact_max=10, nlist=6, nprobe=6, k=2000)
    a, b, sim = float_pairs(x, 0.8, config)
    assert set(zip(a.tolist(), b.tolist())) == brute_force(x, 0.8)
    np.testing.assert_allclose(sim, np.einsum("ij,ij->i", x[a], x[b]), atol=1e-5)
    assert len(a) > 1000  # the 41 near-copies alone make 820 pairs


def test_few_probes_find_a_subset_of_the_pairs():
    x = clustered(seed=1)
    a, b, _ = float_pairs(x, 0.8, SearchConfig(use_gpu=False, exact_max=10, nlist=12, nprobe=2, k=2000))
    found, exact = set(zip(a.tolist(), b.tolist())), brute_force(x, 0.8)
    assert found <= exact and len(found) >= 0.5 * len(exact)


def test_block_hits_keeps_the_k_best_per_row():
    rng = np.random.default_rng(2)
    sims = rng.uniform(0, 1, size=(50, 40)).astype(np.float32)
    sims[:10] = rng.uniform(0.9, 1, size=(10, 40))  # crowded rows: 40 hits each
    i, j = ivfjoin.block_hits(sims, 0.8, 5)
    for row in range(50):
        hits = np.flatnonzero(sims[row] >= 0.8)
        best = set(hits[np.argsort(-sims[row, hits])][:5].tolist())
        assert set(j[i == row].tolist()) == best


def test_keep_best_caps_each_first_index():
    a = np.array([0, 0, 0, 1, 1, 2])
    b = np.array([5, 6, 7, 8, 9, 3])
    s = np.array([0.8, 0.95, 0.9, 0.7, 0.7, 0.99], dtype=np.float32)
    ka, kb, ks = ivfjoin.keep_best(a, b, s, 2)
    assert list(zip(ka.tolist(), kb.tolist())) == [(0, 6), (0, 7), (1, 8), (1, 9), (2, 3)]


def test_crowded_rows_keep_k_pairs_stay_connected_and_warn(caplog):
    x = clustered(seed=3)
    config = SearchConfig(use_gpu=False, exact_max=10, nlist=6, nprobe=6, k=4)
    a, b, _ = float_pairs(x, 0.8, config)
    assert len(a) <= 4 * len(x) < len(brute_force(x, 0.8))
    roots = union_find(len(x), a, b)
    copies = np.r_[0, np.arange(len(x) - 40, len(x))]
    assert len(set(roots[copies].tolist())) == 1
    assert "raise dedup.search.k" in caplog.text
