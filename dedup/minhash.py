"""Caption MinHash signatures, vectorised over a batch, equal to datasketch's ``MinHash.update`` loop.

datasketch (>= 2.0, default ``affine32`` scheme) hashes each shingle with ``sha1_hash32``, pre-mixes it
with the MurmurHash3 finaliser and applies ``a * h + b mod 2**32`` per permutation. We take the
permutations and the finaliser from datasketch itself and do the arithmetic for every shingle of a
batch at once in numpy, then reduce to the per-caption minimum with ``np.minimum.reduceat``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from itertools import chain

import numpy as np
from datasketch import MinHash
from datasketch.minhash import _fmix

from dedup.config import MinHashConfig
from manifests import schema as col

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_CHUNK_SHINGLES = 1 << 16  # bounds the (shingles x num_perm) work array to a few tens of MB


def normalise(caption: str) -> list[str]:
    """NFKC, lower case, punctuation to spaces, split on whitespace."""
    if not caption.isascii():
        caption = unicodedata.normalize("NFKC", caption)
    return _NON_WORD.sub(" ", caption.lower()).split()


def shingles(words: list[str], ngram: int) -> list[str]:
    """Word n-grams joined by a space (repeats kept: a minimum ignores them); a caption shorter than
    ``ngram`` is one shingle of all its words."""
    if len(words) <= ngram:
        return [" ".join(words)]
    return list(map(" ".join, zip(*(words[k:] for k in range(ngram)))))


class MinHasher:
    """Signatures of many captions at once; ``num_perm`` uint32 values each, datasketch-compatible."""

    def __init__(self, num_perm: int = 128, ngram: int = 3, seed: int = 1, min_words: int = 1) -> None:
        reference = MinHash(num_perm=num_perm, seed=seed)
        if reference.scheme != "affine32":
            raise RuntimeError(f"datasketch default scheme is {reference.scheme!r}; this code implements affine32")
        a, b = reference.permutations
        self.a, self.b = a.astype(np.uint32)[:, None], b.astype(np.uint32)[:, None]
        self.num_perm, self.ngram, self.min_words = num_perm, ngram, min_words

    def shingle_sets(self, captions: list[str | None]) -> list[list[str] | None]:
        out = []
        for caption in captions:
            words = normalise(caption) if caption else []
            out.append(shingles(words, self.ngram) if len(words) >= self.min_words else None)
        return out

    def signatures(self, captions: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(signatures[n, num_perm] uint32, valid[n] bool); rows of invalid captions are all 0xFFFFFFFF."""
        sets = self.shingle_sets(captions)
        valid = np.array([s is not None for s in sets], dtype=bool)
        out = np.full((len(sets), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        rows = np.flatnonzero(valid)
        start = 0
        while start < len(rows):
            stop, count = start, 0
            while stop < len(rows) and (count == 0 or count + len(sets[rows[stop]]) <= _CHUNK_SHINGLES):
                count += len(sets[rows[stop]])
                stop += 1
            out[rows[start:stop]] = self._minima([sets[r] for r in rows[start:stop]])
            start = stop
        return out, valid

    def _minima(self, sets: list[list[str]]) -> np.ndarray:
        """Per-caption minimum over its shingles; each distinct shingle of the chunk is hashed once."""
        flat = list(chain.from_iterable(sets))
        sha1 = hashlib.sha1
        digest = {g: sha1(g.encode()).digest()[:4] for g in set(flat)}
        hv = np.frombuffer(b"".join(map(digest.__getitem__, flat)), dtype="<u4").astype(np.uint32)
        hv = _fmix(hv, 32)
        # (perm, shingle) layout: one scalar a, b per row, contiguous over shingles. uint32 arithmetic
        # wraps, which is datasketch's mod 2**32.
        permuted = np.multiply(self.a, hv[None, :])
        np.add(permuted, self.b, out=permuted)
        offsets = np.cumsum([0] + [len(g) for g in sets[:-1]])
        return np.minimum.reduceat(permuted, offsets, axis=1).T


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise fraction of equal signature values: datasketch's ``MinHash.jaccard``."""
    return (a == b).mean(axis=-1)


class CaptionMinHasher:
    """Score stage: reads ``caption``, writes ``caption_minhash`` (num_perm little-endian uint32 as bytes).

    A caption with fewer than ``min_words`` normalised words (or none) gets a null signature: it takes
    part in no caption duplicate.
    """

    reads = (col.CAPTION,)
    writes = (col.CAPTION_MINHASH,)

    def __init__(self, config: MinHashConfig) -> None:
        self.hasher = MinHasher(config.num_perm, config.ngram, config.seed, config.min_words)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sigs, valid = self.hasher.signatures(list(batch[col.CAPTION]))
        column = np.empty(len(valid), dtype=object)
        for i in range(len(valid)):
            column[i] = sigs[i].astype("<u4").tobytes() if valid[i] else None
        batch[col.CAPTION_MINHASH] = column
        return batch
