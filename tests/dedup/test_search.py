"""FAISS pair search equals a NumPy brute force on the same descriptors."""

from __future__ import annotations

import numpy as np
import pytest

from dedup.config import SearchConfig
from dedup.search import binary_pairs, float_pairs


def planted_vectors(n: int = 2000, d: int = 64, copies: int = 150, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[n - copies:] = x[:copies] + rng.normal(scale=0.25, size=(copies, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(x: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    sims = x @ x.T
    a, b = np.nonzero(np.triu(sims >= threshold, k=1))
    return set(zip(a.tolist(), b.tolist()))


@pytest.mark.parametrize("config", [
    SearchConfig(use_gpu=False, query_batch=300),
    SearchConfig(use_gpu=False, exact_max=100, nlist=8, nprobe=8, train_sample=1000, add_batch=333),
], ids=["exact", "ivf-all-probes"])
def test_float_pairs_equal_numpy(config):
    x = planted_vectors()
    a, b, sim = float_pairs(x, 0.75, config)
    assert set(zip(a.tolist(), b.tolist())) == brute_force(x, 0.75)
    np.testing.assert_allclose(sim, np.einsum("ij,ij->i", x[a], x[b]), atol=1e-5)
    assert (a < b).all() and len(a) >= 150


def test_ivf_with_few_probes_keeps_planted_pairs():
    x = planted_vectors(n=5000)
    config = SearchConfig(use_gpu=False, exact_max=100, nlist=32, nprobe=8, train_sample=2000)
    a, b, _ = float_pairs(x, 0.75, config)
    found = set(zip(a.tolist(), b.tolist()))
    planted = {(i, 5000 - 150 + i) for i in range(150)}
    assert len(found & planted) / len(planted) >= 0.95


def test_binary_pairs_equal_numpy_hamming_with_mirrors():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, size=(1500, 8), dtype=np.uint8)
    codes[1000:1100] = codes[:100] ^ (rng.random((100, 8)) < 0.08).astype(np.uint8)
    mirrored = rng.integers(0, 256, size=(1500, 8), dtype=np.uint8)
    mirrored[1400:1450] = codes[200:250]
    a, b, sim = binary_pairs(codes, 10, SearchConfig(query_batch=256), mirrored=mirrored)
    popcount = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)

    def hamming(q: np.ndarray) -> np.ndarray:
        return popcount[q[:, None] ^ codes[None]].sum(-1)

    dist = np.minimum(hamming(codes), hamming(mirrored))
    dist = np.minimum(dist, dist.T)
    ea, eb = np.nonzero(np.triu(dist <= 10, k=1))
    assert set(zip(a.tolist(), b.tolist())) == set(zip(ea.tolist(), eb.tolist()))
    np.testing.assert_allclose(sim, 1 - dist[a, b] / 64)
    assert len(a) >= 140


def test_binary_ivf_finds_planted_pairs():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, size=(4000, 8), dtype=np.uint8)
    codes[3800:] = codes[:200] ^ (rng.random((200, 8)) < 0.06).astype(np.uint8)
    config = SearchConfig(exact_max=100, nlist=16, nprobe=4, train_sample=2000, query_batch=1000)
    a, b, _ = binary_pairs(codes, 10, config)
    exact = set(zip(*binary_pairs(codes, 10, SearchConfig())[:2]))
    found = set(zip(a.tolist(), b.tolist()))
    assert found <= exact and len(found) / len(exact) >= 0.9


def test_region_pairs_keep_each_querys_k_closest_candidates_beyond_the_near_radius():
    from dedup.search import region_pairs

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(1, 32), dtype=np.uint8)
    flips = [np.packbits((np.arange(256) < d).astype(np.uint8))[None] for d in range(0, 60, 2)]
    codes = np.concatenate([base ^ f for f in flips])  # sample i sits 2i bits from sample 0
    owner = np.arange(len(codes))
    config = SearchConfig(use_gpu=False, k=3)
    a, b, _ = region_pairs(codes, owner, codes[:1], owner[:1], 40, config, near_distance=10)
    assert sorted(b[a == 0].tolist()) == [1, 2, 3, 4, 5, 6, 7, 8]  # 5 within 10 bits, then the 3 closest beyond
