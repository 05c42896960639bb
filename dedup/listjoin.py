"""Image near-duplicate search as partitioned work: IVF lists as shuffle buckets. Pure: no Ray.

The same candidates as ``dedup.search`` / ``dedup.ivfjoin`` find in one process, cut by IVF list:

1. the driver trains the quantizer (binary for pHash, spherical k-means for SSCD) on a sample;
2. a task per batch of score files assigns its descriptors to their ``nprobe`` nearest lists: a row is a
   *member* of the first and a *prober* of the others (a pHash's mirrored code probes too), and
   writes (list, sample_id, descriptor, member) bucketed by list;
3. a task per bucket of lists joins each list: pHash by a FAISS Hamming range search of the list's
   members with every row of the list, SSCD by ``ivfjoin``'s block products with its ``k`` cap;
4. pairs found from both sides or in several lists are merged per bucket of ``sample_a`` (SSCD first
   keeps each query's ``k`` best, as the one-process join does).

Below ``search.exact_max`` descriptors one task runs the exact search of ``dedup.search`` instead: the
same function on the same rows as the one-process path, so the pairs are identical.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator

import faiss
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dedup.artefacts import binary_matrix, hex_matrix
from dedup.cluster import SIMILARITY, found_pairs
from dedup.config import LayoutConfig, PdqConfig, PHashConfig, SearchConfig, SscdConfig
from dedup.ivfjoin import _ListJoin, keep_best, nearest_lists, train_centroids
from dedup.layout import (LAYOUT_BYTES, candidate_cosine, layout_matches, search_vectors, tone, tone_cosine,
                          tone_vectors, unpack)
from dedup.phash import split_codes
from dedup.shuffle import concat, scan_bucket, write_buckets, write_pairs
from manifests import schema as col

LIST_SCHEMA = {"list": pl.Int64, col.SAMPLE_ID: pl.String, "vector": pl.Binary, "member": pl.Boolean}
RAW_SCHEMA = {"a": pl.String, "b": pl.String, SIMILARITY: pl.Float32}


def phash_codes(values: pl.Series, nbytes: int) -> tuple[np.ndarray, np.ndarray | None]:
    codes, mirrored = split_codes(values)
    return hex_matrix(codes.to_arrow(), nbytes), None if mirrored is None else hex_matrix(mirrored.to_arrow(), nbytes)


def read_descriptors(source: Path, column: str) -> pl.DataFrame:
    if column not in pq.ParquetFile(source).schema_arrow.names:
        return pl.DataFrame(schema={col.SAMPLE_ID: pl.String, column: pl.String})
    return pl.scan_parquet(source).select(col.SAMPLE_ID, column).drop_nulls().collect()


def sample_descriptors(sources: list[Path], column: str, rate: float, seed: int) -> tuple[int, pl.DataFrame]:
    """Task: (non-null count, a Bernoulli(rate) sample) of a batch of files' ``column``, one file at a
    time; file k of the batch draws with ``seed + k``, so the sample does not depend on the batching."""
    count, samples = 0, []
    for k, source in enumerate(sources):
        frame = read_descriptors(source, column)
        count += frame.height
        samples.append(frame.filter(np.random.default_rng(seed + k).random(frame.height) < rate))
    return count, concat(samples)


# --- training on the driver ---------------------------------------------------------------------

def binary_lists(sample: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """(nlist, nbytes) binary centroids, trained as ``IndexBinaryIVF.train`` trains its quantizer."""
    bits = sample.shape[1] * 8
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, nlist)
    index.cp.seed = seed
    index.train(np.ascontiguousarray(sample))
    quantizer = faiss.downcast_IndexBinary(index.quantizer)
    return faiss.vector_to_array(quantizer.xb).reshape(nlist, sample.shape[1])


def float_lists(sample: np.ndarray, nlist: int, config: SearchConfig) -> np.ndarray:
    return train_centroids(sample, nlist, config)


def list_shape(n: int, config: SearchConfig, binary: bool) -> tuple[int, int]:
    """(nlist, nprobe) as the one-process search picks them for ``n`` descriptors."""
    nlist = config.nlist or int(math.sqrt(n) if binary else 4 * math.sqrt(n))
    nlist = max(1, min(n, nlist))
    return nlist, min(config.nprobe, nlist)


# --- assignment: one task per batch of score files ----------------------------------------------

def _probe_rows(ids: pl.Series, vectors: np.ndarray, probes: np.ndarray, members: bool) -> pl.DataFrame:
    n, nprobe = probes.shape
    raw = np.ascontiguousarray(vectors).view(np.uint8).reshape(n, -1)
    fixed = pa.Array.from_buffers(pa.binary(raw.shape[1]), n, [None, pa.py_buffer(raw.tobytes())])
    blobs = pl.Series("vector", fixed.cast(pa.binary()))
    first = np.zeros((n, nprobe), dtype=bool)
    first[:, 0] = members
    return pl.DataFrame({"list": probes.reshape(-1), col.SAMPLE_ID: np.repeat(ids.to_numpy(), nprobe),
                         "vector": blobs.gather(np.repeat(np.arange(n), nprobe)), "member": first.reshape(-1)},
                        schema=LIST_SCHEMA)


def assign_phash(sources: list[Path], config: PHashConfig, centroids: np.ndarray, nprobe: int,
                 buckets: int, out: Path, part: str) -> int:
    quantizer = faiss.IndexBinaryFlat(centroids.shape[1] * 8)
    quantizer.add(np.ascontiguousarray(centroids))
    rows = concat(_phash_probes(source, config, quantizer, nprobe) for source in sources)
    return write_buckets(rows, pl.col("list"), buckets, out, part)


def _phash_probes(source: Path, config: PHashConfig, quantizer: faiss.IndexBinaryFlat, nprobe: int) -> pl.DataFrame:
    frame = read_descriptors(source, col.PHASH)
    if frame.is_empty():
        return pl.DataFrame()
    codes, mirrored = phash_codes(frame[col.PHASH], config.bits // 8)
    rows = [_probe_rows(frame[col.SAMPLE_ID], codes, quantizer.search(codes, nprobe)[1], True)]
    if mirrored is not None:
        rows.append(_probe_rows(frame[col.SAMPLE_ID], mirrored, quantizer.search(mirrored, nprobe)[1], False))
    return pl.concat(rows)


def assign_sscd(sources: list[Path], config: SscdConfig, search: SearchConfig, centroids: np.ndarray, nprobe: int,
                buckets: int, out: Path, part: str) -> int:
    rows = concat(_sscd_probes(source, config, search, centroids, nprobe) for source in sources)
    return write_buckets(rows, pl.col("list"), buckets, out, part)


def _sscd_probes(source: Path, config: SscdConfig, search: SearchConfig, centroids: np.ndarray,
                 nprobe: int) -> pl.DataFrame:
    frame = read_descriptors(source, col.SSCD_EMBEDDING)
    if frame.is_empty():
        return pl.DataFrame()
    vectors = binary_matrix(frame[col.SSCD_EMBEDDING].to_arrow(), np.float32, config.dims)
    probes = nearest_lists(vectors, centroids, nprobe, search.query_batch)
    return _probe_rows(frame[col.SAMPLE_ID], vectors, probes, True)


def assign_layout(sources: list[Path], config: LayoutConfig, pdq: PdqConfig, search: SearchConfig,
                  centroids: np.ndarray, tone_centroids: np.ndarray | None, nprobe: int, buckets: int, out: Path,
                  part: str) -> int:
    """Each layout probes its ``nprobe`` nearest lists (its search vector, ``dedup.layout.search_vectors``); an
    image under the quality band is a member of the first: so two images above it never meet. A layout with a
    shape (``dedup.layout.tone_vectors``) also probes the photometric lists (``tone_centroids``, numbered after
    the ``centroids``) by its photometric vector. Rows carry the layout."""
    rows = concat(_layout_probes(source, config, pdq, search, (centroids, tone_centroids), nprobe)
                  for source in sources)
    return write_buckets(rows, pl.col("list"), buckets, out, part)


def layout_rows(source: Path, config: LayoutConfig, pdq: PdqConfig) -> pl.DataFrame:
    """sample_id, layout_code and ``low`` (PDQ quality under the layout band) of one score file's layouts."""
    names = pq.ParquetFile(source).schema_arrow.names
    if col.LAYOUT_CODE not in names:
        return pl.DataFrame(schema={col.SAMPLE_ID: pl.String, col.LAYOUT_CODE: pl.Binary, "low": pl.Boolean})
    quality = pl.col(col.PDQ_QUALITY).cast(pl.Int64) if col.PDQ_QUALITY in names else pl.lit(None, pl.Int64)
    low = (quality < pdq.min_quality + config.quality_margin).fill_null(False).alias("low")
    return pl.scan_parquet(source).drop_nulls(col.LAYOUT_CODE).select(col.SAMPLE_ID, col.LAYOUT_CODE, low).collect()


def _layout_probes(source: Path, config: LayoutConfig, pdq: PdqConfig, search: SearchConfig,
                   centroids: tuple[np.ndarray, np.ndarray | None], nprobe: int) -> pl.DataFrame:
    frame = layout_rows(source, config, pdq)
    if frame.is_empty():
        return pl.DataFrame()
    rows = binary_matrix(frame[col.LAYOUT_CODE].to_arrow(), np.uint8, LAYOUT_BYTES)
    values, ids, low = unpack(rows), frame[col.SAMPLE_ID], frame["low"].to_numpy()
    raw, toned = centroids
    probed = [(np.arange(len(rows)), nearest_lists(search_vectors(values), raw, nprobe, search.query_batch))]
    if toned is not None:
        shaped, vectors = tone_vectors(tone(values), config.tone)
        probed.append((shaped, len(raw) + nearest_lists(vectors, toned, min(nprobe, len(toned)), search.query_batch)))
    return concat([_probe_rows(ids.gather(at[keep]), rows[at[keep]], probes[keep], member)
                   for at, probes in probed for keep, member in ((low[at], True), (~low[at], False)) if keep.any()])


def tone_lists(layouts: np.ndarray, config: LayoutConfig, nlist: int, search: SearchConfig) -> np.ndarray | None:
    """Centroids of the photometric lists, trained on the sampled layouts with a shape; None: the photometric
    match is off or no sampled layout has a shape (then the lists find no photometric pair)."""
    if not config.tone.enabled:
        return None
    _, vectors = tone_vectors(tone(unpack(layouts)), config.tone)
    return float_lists(vectors, min(nlist, len(vectors)), search) if len(vectors) else None


# --- the per-list joins: one task per bucket of lists -------------------------------------------

def _lists(source: Path, bucket: int) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(member ids, member rows, other ids, other rows) of each list in the bucket (member: first probe)."""
    frame = scan_bucket(source, bucket, LIST_SCHEMA).collect().sort("list", "member", descending=[False, True])
    lists = frame["list"].to_numpy()
    starts = np.flatnonzero(np.r_[True, lists[1:] != lists[:-1]]) if len(lists) else np.empty(0, np.int64)
    for lo, hi in zip(starts, np.r_[starts[1:], len(lists)]):
        part = frame.slice(int(lo), int(hi - lo))
        yield part.filter(pl.col("member")), part.filter(~pl.col("member"))


def join_phash_lists(source: Path, bucket: int, max_distance: int, bits: int, raw_buckets: int, out: Path) -> int:
    """Every row of a list (members, probers, mirrored probers) against the list's members by Hamming radius."""
    found = []
    for members, others in _lists(source, bucket):
        if members.is_empty():
            continue
        index = faiss.IndexBinaryFlat(bits)
        index.add(binary_matrix(members["vector"].to_arrow(), np.uint8, bits // 8))
        queries = pl.concat([members, others])
        lims, dist, ids = index.range_search(binary_matrix(queries["vector"].to_arrow(), np.uint8, bits // 8),
                                             max_distance + 1)  # faiss returns distances strictly below
        q = np.repeat(np.arange(queries.height), np.diff(lims.astype(np.int64)))
        found.append(pl.DataFrame({"a": queries[col.SAMPLE_ID].gather(q), "b": members[col.SAMPLE_ID].gather(ids),
                                   SIMILARITY: (1.0 - dist.astype(np.float32) / bits)}, schema=RAW_SCHEMA))
    return _write_raw(found, raw_buckets, out, f"{bucket:05d}", by="lo")


def join_sscd_lists(source: Path, bucket: int, threshold: float, dims: int, k: int, raw_buckets: int,
                    out: Path, device: str | None = None) -> int:
    """ivfjoin's list join (members with each other, then with the probers), k best per query per list;
    ``device`` (``cuda``, ``cpu``): the block products in torch on it (``dedup.gpujoin``), else numpy."""
    join = _device_join(device)

    def pairs(rows: pl.DataFrame, members: int) -> tuple[np.ndarray, ...]:
        vectors = binary_matrix(rows["vector"].to_arrow(), np.float32, dims)
        return join(vectors, np.arange(members), np.arange(members, rows.height), threshold, k)

    return _join_each_list(source, bucket, pairs, raw_buckets, out)


def join_layout_lists(source: Path, bucket: int, config: LayoutConfig, k: int, tone_from: int, raw_buckets: int,
                      out: Path) -> int:
    """Each list's candidates as the one-process search finds them (inner product of the search vectors, its
    ``k`` best per query; the photometric vectors in the lists from ``tone_from`` on), then checked by
    ``dedup.layout.layout_matches``."""
    def pairs(rows: pl.DataFrame, members: int) -> tuple[np.ndarray, ...]:
        layouts = binary_matrix(rows["vector"].to_arrow(), np.uint8, LAYOUT_BYTES)
        tones = None
        if rows["list"][0] >= tone_from:  # every row here has a shape: tone_vectors keeps them all
            tones = tone(unpack(layouts))  # once per row: the search's and the check's
            vectors, threshold = tone_vectors(tones, config.tone)[1], tone_cosine(config.tone)
        else:
            vectors, threshold = search_vectors(unpack(layouts)), candidate_cosine(config.max_delta_e)
        a, b, _ = _ListJoin(vectors, threshold, k)((np.arange(members), np.arange(members, rows.height)))
        return layout_matches(layouts, a, b, config, tones)

    return _join_each_list(source, bucket, pairs, raw_buckets, out)


def _join_each_list(source: Path, bucket: int, pairs: Callable[[pl.DataFrame, int], tuple[np.ndarray, ...]],
                    raw_buckets: int, out: Path) -> int:
    """``pairs(rows, members)`` -> (a, b, similarity) row numbers of each list's rows (its members first, then
    its probers), as raw pairs of sample ids bucketed by ``a``."""
    found = []
    for members, probers in _lists(source, bucket):
        if members.is_empty():
            continue
        rows = pl.concat([members, probers])
        a, b, s = pairs(rows, members.height)
        ids = rows[col.SAMPLE_ID]
        found.append(pl.DataFrame({"a": ids.gather(a), "b": ids.gather(b), SIMILARITY: s}, schema=RAW_SCHEMA))
    return _write_raw(found, raw_buckets, out, f"{bucket:05d}", by="a")


def _device_join(device: str | None):
    if device is None:
        return lambda vectors, members, probers, threshold, k: _ListJoin(vectors, threshold, k)((members, probers))
    from dedup import gpujoin  # torch: only in a task that asked for a device

    on = gpujoin.device_for(device)
    return lambda vectors, members, probers, threshold, k: gpujoin.list_join(vectors, members, probers, threshold, k, on)


def _write_raw(found: list[pl.DataFrame], buckets: int, out: Path, part: str, by: str) -> int:
    raw = pl.concat(found) if found else pl.DataFrame(schema=RAW_SCHEMA)
    raw = raw.filter(pl.col("a") != pl.col("b"))
    if by == "lo":  # no query-side cap: order the pair now and merge by its smaller end
        raw = _ordered(raw)
    return write_buckets(raw, pl.col("a"), buckets, out, part)


def _ordered(raw: pl.DataFrame) -> pl.DataFrame:
    swap = pl.col("a") > pl.col("b")
    return raw.select(pl.when(swap).then(pl.col("b")).otherwise(pl.col("a")).alias("a"),
                      pl.when(swap).then(pl.col("a")).otherwise(pl.col("b")).alias("b"), SIMILARITY)


def cap_queries(source: Path, bucket: int, k: int, buckets: int, out: Path) -> int:
    """SSCD: each query's ``k`` best pairs over all its lists (ivfjoin.keep_best), then ordered and
    sent on to the bucket of the smaller sample_id."""
    raw = scan_bucket(source, bucket, RAW_SCHEMA).collect()
    if raw.is_empty():
        return 0
    a_ids = raw["a"].unique().sort()
    b_ids = raw["b"].unique().sort()
    a, b, s = keep_best(a_ids.search_sorted(raw["a"]).to_numpy(), b_ids.search_sorted(raw["b"]).to_numpy(),
                        raw[SIMILARITY].to_numpy(), k)
    kept = pl.DataFrame({"a": a_ids.gather(a), "b": b_ids.gather(b), SIMILARITY: s}, schema=RAW_SCHEMA)
    return write_buckets(_ordered(kept), pl.col("a"), buckets, out, f"{bucket:05d}")


def merge_pairs(source: Path, bucket: int, detector: str, out: Path) -> int:
    """A pair found several times (both sides, several lists, mirrored) keeps its best similarity."""
    raw = (scan_bucket(source, bucket, RAW_SCHEMA).group_by("a", "b").agg(pl.col(SIMILARITY).max())
           .sort("a", "b").collect())
    return write_pairs(found_pairs(raw, detector), out / f"{detector}-{bucket:05d}.parquet")
