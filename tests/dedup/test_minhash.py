"""Caption MinHash: our vectorised signatures equal datasketch's, and LSH clusters match brute force."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np
import pytest
from datasketch import MinHash

from dedup.cluster import union_find
from dedup.config import MinHashConfig
from dedup.lsh import band_frame, band_keys, band_shape, candidate_pairs, verify
from dedup.minhash import CaptionMinHasher, MinHasher, normalise, shingles
from dedup.synthetic import captions
from manifests import schema as col

TEXTS = ["A photo of a cat on a red sofa", "Café crème — Ünïcödé ｆｕｌｌｗｉｄｔｈ text here", "a b", "one two three",
         "repeat repeat repeat repeat repeat", "Punctuation, everywhere!!! (really) & more_words here"]


@pytest.mark.parametrize("num_perm,ngram,seed", [(128, 3, 1), (64, 2, 7), (256, 1, 42)])
def test_signatures_equal_datasketch_update_loop(num_perm, ngram, seed):
    hasher = MinHasher(num_perm, ngram, seed)
    sigs, valid = hasher.signatures(TEXTS)
    assert valid.all()
    for text, sig in zip(TEXTS, sigs):
        reference = MinHash(num_perm=num_perm, seed=seed)
        for shingle in shingles(normalise(text), ngram):
            reference.update(shingle.encode())
        np.testing.assert_array_equal(sig, reference.hashvalues)


def test_normalise_folds_case_punctuation_and_width():
    assert normalise("Hello,   WORLD!  ｆｏｏ_bar") == ["hello", "world", "foo", "bar"]
    assert shingles(["a", "b"], 3) == ["a b"]


def test_stage_writes_bytes_and_nulls_short_or_missing_captions():
    stage = CaptionMinHasher(MinHashConfig(enabled=True, num_perm=32))
    batch = {col.CAPTION: np.array(["a long enough caption here", "image", None, ""], dtype=object)}
    out = stage(batch)[col.CAPTION_MINHASH]
    assert len(out[0]) == 32 * 4 and out[1] is None and out[2] is None and out[3] is None


def exact_pairs(sets: list[set[str]], threshold: float) -> set[tuple[int, int]]:
    """Every pair with exact Jaccard >= threshold (pairs sharing no shingle cannot qualify)."""
    postings = defaultdict(list)
    for i, s in enumerate(sets):
        for shingle in s:
            postings[shingle].append(i)
    candidates = {p for ids in postings.values() if len(ids) < 200 for p in combinations(ids, 2)}
    return {(i, j) for i, j in candidates if len(sets[i] & sets[j]) / len(sets[i] | sets[j]) >= threshold}


def co_clustered(n: int, pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    roots = union_find(n, a, b)
    groups = defaultdict(list)
    for i, r in enumerate(roots):
        groups[r].append(i)
    return {p for g in groups.values() if len(g) > 1 for p in combinations(g, 2)}


def test_lsh_clusters_match_exact_jaccard_brute_force(tmp_path):
    config = MinHashConfig(enabled=True)
    texts, _ = captions(3000, dup_fraction=0.3, seed=3)
    hasher = MinHasher(config.num_perm, config.ngram, config.seed)
    sigs, valid = hasher.signatures(texts)
    assert valid.all()
    bands, rows = band_shape(config.num_perm, config.threshold)
    files = []
    for k, part in enumerate(np.array_split(np.arange(len(texts)), 3)):  # three "score files"
        files.append(tmp_path / f"{k}.parquet")
        band_frame(part, band_keys(sigs[part], bands, rows)).write_parquet(files[-1])
    found = verify(candidate_pairs(files, config.max_bucket).collect(engine="streaming"), sigs, config.threshold)
    predicted = co_clustered(len(texts), set(zip(found["a"].to_list(), found["b"].to_list())))
    sets = [set(s) for s in hasher.shingle_sets(texts)]
    truth = co_clustered(len(texts), exact_pairs(sets, config.threshold))
    assert len(truth) > 300  # the generator planted enough near-duplicates to measure
    recall = len(predicted & truth) / len(truth)
    precision = len(predicted & truth) / len(predicted)
    print(f"recall={recall:.3f} precision={precision:.3f} truth={len(truth)}")
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
