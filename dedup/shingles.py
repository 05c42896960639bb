"""Caption shingles as byte ranges of one buffer, and a vectorised 32-bit hash of them.

Normalisation is columnar, in Polars (Rust): NFKC, lower case, every run of ``[\\W_]+`` to one space,
strip. That expression *is* the definition of a normalised caption. It differs from Python's ``re``
on some Unicode: Rust's ``\\w`` includes combining marks (Mn/Mc/Me) and joiners that Python's ``\\w``
does not, so a decomposed mark that NFKC cannot compose stays in its word here. The tests' scalar reference
(``support.dedup_reference.normalise``) runs the same expression on one caption, so its words never disagree.

After it, words are separated by exactly one space byte, so the word n-gram "w1 w2 w3" is a byte
substring of the normalised caption: shingle j of a row spans [start of word j, end of word j+n-1).
A row with fewer than n words (but at least ``min_words``) is one shingle, the whole row.

``hash32`` ("poly64") is defined by the shingle's bytes alone: Horner's rule mod 2**64 from the
length, ``h = L; h = h * P + byte``, then MurmurHash3's fmix64, top 32 bits. ``ShingleHasher`` computes
the same values for every shingle of a batch from prefix sums (see ``Shingles.poly64``). A
polynomial hash mod 2**64 is not collision resistant against an adversary (Thue-Morse strings of a
few thousand bytes collide for any base): a crafted collision only makes two captions look more
alike, and ``sha1`` is there for whoever needs that guarantee.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

NON_WORD = r"[\W_]+"
SPACE = 0x20
P = 0x9E3779B97F4A7C15  # odd, so invertible mod 2**64
Q = pow(P, -1, 1 << 64)
_MASK = (1 << 64) - 1
_FMIX64 = (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33)


def normalised(captions: list[str | None]) -> pl.Series:
    """The columnar normalisation (the definition); null stays null."""
    return _nfkc(pl.Series(values=captions, dtype=pl.String)).str.to_lowercase().str.replace_all(
        NON_WORD, " ").str.strip_chars()


def _nfkc(column: pl.Series) -> pl.Series:
    """NFKC of the rows that are not pure ASCII (NFKC leaves ASCII as it is): Polars' NFKC is most of
    the normalisation time, and most captions are ASCII."""
    non_ascii = (column.str.len_bytes() != column.str.len_chars()).fill_null(False).arg_true()
    if len(non_ascii) == 0:
        return column
    return column.scatter(non_ascii, column.gather(non_ascii).str.normalize("NFKC"))


def fmix64(h: int) -> int:
    s1, m1, s2, m2, s3 = _FMIX64
    h ^= h >> s1
    h = (h * m1) & _MASK
    h ^= h >> s2
    h = (h * m2) & _MASK
    return h ^ (h >> s3)


def hash32(b: bytes) -> int:
    """The "poly64" hash of a byte string, one byte at a time: datasketch's ``hashfunc`` for it."""
    h = len(b)
    for byte in b:
        h = (h * P + byte) & _MASK
    return fmix64(h) >> 32


def _fmix64_array(h: np.ndarray) -> np.ndarray:
    s1, m1, s2, m2, s3 = (np.uint64(c) for c in _FMIX64)
    h = h ^ (h >> s1)
    h *= m1
    h ^= h >> s2
    h *= m2
    h ^= h >> s3
    return h


@dataclass
class Shingles:
    """Every shingle of a batch as a byte range [start, end) of ``data``, grouped by row in order."""

    data: np.ndarray  # uint8: the normalised captions' UTF-8 bytes, concatenated
    row_offsets: np.ndarray  # int64 [rows + 1]: row r's bytes are data[row_offsets[r]:row_offsets[r + 1]]
    counts: np.ndarray  # int64 [rows]: shingles of each row, 0 for a row without a signature
    starts: np.ndarray  # int64 [shingles]
    ends: np.ndarray  # int64 [shingles]

    @classmethod
    def of(cls, captions: list[str | None], ngram: int, min_words: int) -> Shingles:
        column = normalised(captions).rechunk().to_arrow()
        n = len(column)
        _, offsets_buf, data_buf = column.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)[column.offset:column.offset + n + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]] if data_buf else np.empty(0, np.uint8)
        offsets = offsets - offsets[0]
        word_starts, word_ends, words = _words(data, offsets)
        counts = np.where(words >= max(min_words, 1), np.maximum(words - (ngram - 1), 1), 0)
        first_word = np.cumsum(words) - words
        row = np.repeat(np.arange(n), counts)
        j = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
        first = first_word[row] + j
        last = first + np.minimum(ngram - 1, words[row] - 1)
        return cls(data, offsets, counts, word_starts[first], word_ends[last])

    def as_bytes(self) -> list[bytes]:
        buf = self.data.tobytes()
        return [buf[s:e] for s, e in zip(self.starts.tolist(), self.ends.tolist())]

    def sha1(self) -> np.ndarray:
        """datasketch's default hash of every shingle (uint32), each distinct shingle hashed once."""
        flat = self.as_bytes()
        sha1 = hashlib.sha1
        digest = {g: sha1(g).digest()[:4] for g in set(flat)}
        return np.frombuffer(b"".join(map(digest.__getitem__, flat)), dtype="<u4").astype(np.uint32)


def _words(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte offsets of every word's start and end, in row order, and the word count of each row.

    Rows hold no leading, trailing or double spaces, so a word starts at a non-empty row's start or
    after a space, and ends at a space or at the row's end."""
    lo, hi = offsets[:-1], offsets[1:]
    nonempty = hi > lo
    spaces = np.flatnonzero(data == SPACE)
    starts = np.zeros(len(data) + 1, dtype=bool)
    ends = np.zeros(len(data) + 1, dtype=bool)
    starts[lo[nonempty]] = True
    starts[spaces + 1] = True
    ends[hi[nonempty]] = True
    ends[spaces] = True
    words = np.where(nonempty, np.diff(np.searchsorted(spaces, offsets)) + 1, 0)
    return np.flatnonzero(starts), np.flatnonzero(ends), words


class ShingleHasher:
    """Vectorised ``hash32`` of every shingle of a ``Shingles``; caches the power tables of P and Q."""

    def __init__(self) -> None:
        self.p_pow = self.q_pow = np.ones(1, dtype=np.uint64)

    def _powers(self, n: int) -> None:
        if len(self.p_pow) > n:
            return
        size = max(n + 1, 2 * len(self.p_pow), 1024)
        self.p_pow, self.q_pow = (np.multiply.accumulate(np.r_[np.uint64(1), np.full(size - 1, base, np.uint64)])
                                  for base in (np.uint64(P), np.uint64(Q)))

    def __call__(self, sh: Shingles) -> np.ndarray:
        """uint32 hash of every shingle: S = cumsum(b_i Q^pos_i) within rows, so
        (S[e] - S[s]) P^(e-1-row_start) = sum b_i P^(e-1-i), Horner's sum over the shingle."""
        lengths = np.diff(sh.row_offsets)
        self._powers(int(lengths.max(initial=0)))
        row_start = np.repeat(sh.row_offsets[:-1], lengths)
        pos = np.arange(len(sh.data)) - row_start
        prefix = np.zeros(len(sh.data) + 1, dtype=np.uint64)
        np.cumsum(sh.data * self.q_pow[pos], out=prefix[1:])
        shingle_row_start = np.repeat(sh.row_offsets[:-1], sh.counts)
        length = sh.ends - sh.starts
        h = (prefix[sh.ends] - prefix[sh.starts]) * self.p_pow[sh.ends - 1 - shingle_row_start]
        h += length.astype(np.uint64) * self.p_pow[length]
        return (_fmix64_array(h) >> np.uint64(32)).astype(np.uint32)
