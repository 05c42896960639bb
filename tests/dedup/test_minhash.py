"""Caption MinHash: our vectorised signatures equal datasketch's update loop, and LSH clusters match brute force."""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import combinations

import numpy as np
import polars as pl
import pydantic
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup import minhash
from dedup.cluster import union_find
from dedup.config import MinHashConfig
from dedup.lsh import band_frame, band_keys, band_shape, candidate_pairs, verify
from dedup.minhash import CaptionMinHasher, MinHasher
from dedup.shingles import NON_WORD, ShingleHasher, Shingles, hash32, normalised
from support.dedup_reference import normalise, shingles
from support.dedup_synthetic import captions
from manifests import schema as col

_rng = random.Random(5)
LONG = " ".join(_rng.choice(["alpha", "beta", "gamma", "délta", "ε", "猫"]) for _ in range(1500))
TEXTS = ["A photo of a cat on a red sofa", "Café crème — Ünïcödé ｆｕｌｌｗｉｄｔｈ text here", "a b", "one two three",
         "repeat repeat repeat repeat repeat", "Punctuation, everywhere!!! (really) & more_words here",
         None, "", "   ", "!!! ___ ---", "image", "snake_case_words and 123 digits 4.5", "tabs\tand\nnewlines\r\nhere",
         "emoji 🐱🐶 between 😀 words", "猫が ソファの 上に いる 写真", "x\u0301y combining mark not composed",
         "ﬁne ligature ① circled ²", "ΑΣ final sigma ΟΔΟΣ", LONG, "the same the same the same the same"]


def reference_signature(text: str | None, num_perm: int, ngram: int, seed: int, min_words: int, hashfunc: str):
    """datasketch's per-object update loop over the scalar shingles; None when no signature."""
    words = normalise(text) if text is not None else []
    if not words or len(words) < min_words:
        return None
    mh = MinHash(num_perm=num_perm, seed=seed, **({"hashfunc": hash32} if hashfunc == "poly64" else {}))
    for shingle in shingles(words, ngram):
        mh.update(shingle.encode())
    return mh.hashvalues


@pytest.mark.parametrize("hashfunc", ["poly64", "sha1"])
@pytest.mark.parametrize("num_perm,ngram,seed,min_words", [(128, 3, 1, 1), (64, 2, 7, 4), (256, 1, 42, 1), (32, 5, 3, 2)])
def test_signatures_equal_datasketch_update_loop(num_perm, ngram, seed, min_words, hashfunc):
    sigs, valid = MinHasher(num_perm, ngram, seed, min_words, hashfunc).signatures(TEXTS)
    for text, sig, ok in zip(TEXTS, sigs, valid):
        reference = reference_signature(text, num_perm, ngram, seed, min_words, hashfunc)
        assert ok == (reference is not None), text
        if ok:
            np.testing.assert_array_equal(sig, reference, err_msg=repr(text))
        else:
            assert (sig == np.iinfo(np.uint32).max).all()


def test_chunk_boundaries_change_nothing(monkeypatch):
    texts, _ = captions(300, seed=4)
    texts[7] = texts[150] = None
    whole = MinHasher(64, 3, 1, 4).signatures(texts)
    monkeypatch.setattr(minhash, "_CHUNK_ROWS", 37)
    monkeypatch.setattr(minhash, "_PERMUTE_ROWS", 5)
    chunked = MinHasher(64, 3, 1, 4).signatures(texts)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


def test_normalise_folds_case_punctuation_and_width():
    assert normalise("Hello,   WORLD!  ｆｏｏ_bar") == ["hello", "world", "foo", "bar"]
    assert normalise("") == [] and normalise("__ !") == []
    assert shingles(["a", "b"], 3) == ["a b"]
    # The Polars (Rust regex) definition: a combining mark NFKC cannot compose stays in its word,
    # where Python's re.split(r"[\W_]+") would cut "x\u0301y" in two.
    assert normalise("x\u0301y") == ["x\u0301y"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40), st.sampled_from(TEXTS[:6])), max_size=10))
def test_nfkc_of_non_ascii_rows_only_equals_nfkc_of_every_row(texts):
    every_row = (pl.Series(values=texts, dtype=pl.String).str.normalize("NFKC").str.to_lowercase()
                 .str.replace_all(NON_WORD, " ").str.strip_chars())
    assert normalised(texts).equals(every_row)


@pytest.mark.parametrize("ngram", [1, 3, 4])
def test_byte_range_shingles_equal_scalar_shingles(ngram):
    columnar = MinHasher(16, ngram).shingle_sets(TEXTS)
    for text, got in zip(TEXTS, columnar):
        words = normalise(text) if text is not None else []
        assert got == (shingles(words, ngram) if words else None), text


def test_vectorised_hash_equals_scalar_hash_on_shingles():
    sh = Shingles.of(TEXTS, 3, 1)
    np.testing.assert_array_equal(ShingleHasher()(sh), [hash32(g) for g in sh.as_bytes()])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=1, max_size=300), st.randoms(use_true_random=False)), min_size=1, max_size=8))
def test_vectorised_hash_equals_scalar_hash_on_random_bytes(rows):
    """Arbitrary bytes (NUL, non-UTF-8, non-ASCII) and arbitrary sub-ranges of each row, grouped by row."""
    data = b"".join(b for b, _ in rows)
    offsets = np.cumsum([0] + [len(b) for b, _ in rows])
    starts, ends, counts = [], [], []
    for (b, rnd), lo in zip(rows, offsets):
        ranges = [sorted(rnd.sample(range(len(b) + 1), 2)) for _ in range(rnd.randint(1, 4))] if len(b) > 1 else [[0, 1]]
        ranges.append([0, len(b)])
        starts += [lo + s for s, _ in ranges]
        ends += [lo + e for _, e in ranges]
        counts.append(len(ranges))
    sh = Shingles(np.frombuffer(data, np.uint8), offsets, np.array(counts), np.array(starts), np.array(ends))
    hasher = ShingleHasher()
    np.testing.assert_array_equal(hasher(sh), [hash32(data[s:e]) for s, e in zip(starts, ends)])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=80)), max_size=12))
def test_signatures_equal_datasketch_on_arbitrary_text(texts):
    sigs, valid = MinHasher(16, 2, 1).signatures(texts)
    for text, sig, ok in zip(texts, sigs, valid):
        reference = reference_signature(text, 16, 2, 1, 1, "poly64")
        assert ok == (reference is not None)
        if ok:
            np.testing.assert_array_equal(sig, reference)


@pytest.mark.parametrize("hashfunc", ["poly64", "sha1"])
def test_stage_writes_bytes_and_nulls_short_or_missing_captions(hashfunc):
    stage = CaptionMinHasher(MinHashConfig(enabled=True, num_perm=32, hashfunc=hashfunc))
    texts = ["a long enough caption here", "image", None, ""]
    out = stage({col.CAPTION: np.array(texts, dtype=object)})[col.CAPTION_MINHASH]
    assert out[1] is None and out[2] is None and out[3] is None
    reference = reference_signature(texts[0], 32, 3, 1, 4, hashfunc)
    assert out[0] == reference.astype("<u4").tobytes()


def test_config_rejects_unknown_hashfunc():
    with pytest.raises(pydantic.ValidationError, match="hashfunc"):
        MinHashConfig(hashfunc="md5")


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
    hasher = MinHasher(config.num_perm, config.ngram, config.seed, hashfunc=config.hashfunc)
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
