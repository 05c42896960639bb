"""PDQ near-duplicates as partitioned work: binary IVF lists over the region codes as shuffle buckets.
Pure: no Ray.

``dedup.detectors.pdq_pairs`` indexes every usable region code of every image (the full region's 8
flips/rot90s, the centre crops) and queries it with each image's un-rotated full code and crop codes,
exactly up to ``search.exact_max`` indexed codes and through ``IndexBinaryIVF`` beyond. Cut by list:

1. a task per batch of score files (``Plan.batches``) counts its usable indexed codes and draws a
   sample of them, score file i with ``search.seed + i`` whatever the batching; the driver trains the
   binary quantizer (as ``IndexBinaryIVF.train`` does) on the sample;
2. a task per batch of score files assigns each indexed code to its nearest list (a *member*) and
   each query code to its ``nprobe`` nearest lists (a *prober*), written (list, sample_id, code,
   member) bucketed by list: an IVF search's candidates, list by list;
3. a task per bucket of lists range-searches each list's probers among its members (Hamming radius);
   two codes of one image are no pair, nor two images whose colours differ (each list row carries its
   image's ``pdq_colour`` signature: the one-process detector's ``colour_gate``, applied where both meet);
4. pairs found by several codes, from both sides or in several lists keep their best match, merged
   per bucket of ``sample_a`` (``listjoin.merge_pairs``).

Below ``exact_max`` indexed codes one task runs the one-process detector itself: identical pairs.
With geometric verification (``verify.enabled``) the lists are searched out to ``verify.max_distance``
and the hits go on to ``dedup.pdqverify`` (far hits capped per query code, ORB + RANSAC per bucket).
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dedup import listjoin, pdqverify
from dedup.artefacts import SampleIndex, binary_matrix
from dedup.config import PdqConfig, SearchConfig
from dedup.detectors import pdq_pairs as one_process_pdq_pairs
from dedup.pdq import (CODE_BYTES, COLOUR_BYTES, HUE_BINS, colour_signatures, compatible, row_width, unpack_rows,
                      variants)
from dedup.shuffle import concat, write_buckets, write_pairs
from dedup.plan import Plan
from manifests import schema as col


BITS = 8 * CODE_BYTES
ROW_BYTES = 64  # a shuffled code row beside its 32 bytes: sample_id, list, flag


def pdq_pairs(plan: Plan) -> int:
    """Driver: pdq pairs to ``dedup/pairs/pdq-NNNNN.parquet``; returns their count."""
    config, search, files = plan.config.pdq, plan.config.search, plan.layout.score_files()
    codes_per_row, queried_per_row = variants(config) + len(config.regions), 1 + len(config.regions)
    rate = min(1.0, search.train_sample / max(1, sum(plan.file_rows(f) for f in files) * codes_per_row))
    batches = plan.batches(files, ROW_BYTES + 2 * codes_per_row * CODE_BYTES)  # stored and unpacked codes
    firsts = np.cumsum([search.seed] + [len(b) for b in batches])  # file i draws with seed + i
    found = plan.each(sample_codes, [(b, config, rate, int(s)) for b, s in zip(batches, firsts)])
    count = sum(n for n, _ in found)
    if count <= search.exact_max:  # the one-process exact search, in one task: identical pairs
        return sum(plan.each(exact_pairs, [(config, search, files, plan.layout.pairs_dir)]))
    nlist, nprobe = listjoin.list_shape(count, search, binary=True)
    centroids = listjoin.binary_lists(np.concatenate([s for _, s in found]), nlist, search.seed)
    queries = count // codes_per_row * queried_per_row * nprobe
    lists, raw = plan.fresh("pdq-lists"), plan.fresh("pdq-raw")
    list_buckets = plan.buckets(count + queries, ROW_BYTES + CODE_BYTES + COLOUR_BYTES)
    near, verify = near_distance(config), config.verify.enabled
    radius = max(near, config.verify.max_distance) if verify else near
    raw_buckets = plan.buckets(count * (search.k if verify else 1), ROW_BYTES)  # hits: ~pairs, or k per query
    row_bytes = (codes_per_row + queried_per_row * nprobe) * (ROW_BYTES + CODE_BYTES + COLOUR_BYTES)  # members, probes
    plan.each(assign_codes, [(batch, config, centroids, nprobe, list_buckets, lists, f"{i:05d}")
                             for i, batch in enumerate(plan.batches(files, row_bytes))])
    plan.each(join_lists, [(lists, b, radius, raw_buckets, raw, config, verify) for b in range(list_buckets)])
    if verify:
        return pdqverify.verified_pairs(plan, raw, raw_buckets, near)
    return sum(plan.each(listjoin.merge_pairs, [(raw, b, "pdq", plan.layout.pairs_dir)
                                                for b in range(raw_buckets)]))


def near_distance(config: PdqConfig) -> int:
    """The Hamming radius of the stored pairs (as the one-process detector computes it)."""
    return math.floor((1.0 - config.stored_from) * BITS + 1e-9)


def read_codes(source: Path, config: PdqConfig) -> tuple[pl.Series, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sample_ids, codes (n, V + R, 32), indexed (n, V + R), queried (n, V + R), colour signatures (n,
    HUE_BINS)) of one score file: a code is indexed when its region's quality reaches ``min_quality``, queried
    when indexed and not a rotation. A file or row without ``pdq_colour`` (scored before the colour gate) gets
    a zero signature, which passes the gate with every image, as in the one-process detector."""
    names = pq.ParquetFile(source).schema_arrow.names
    if col.PDQ_CODES not in names:
        empty = np.empty((0, variants(config) + len(config.regions)), bool)
        return pl.Series(col.SAMPLE_ID, [], pl.String), np.empty((0, *empty.shape[1:], CODE_BYTES), np.uint8), \
            empty, empty, np.empty((0, HUE_BINS), np.float16)
    colour = [col.PDQ_COLOUR] if col.PDQ_COLOUR in names else []
    frame = (pl.read_parquet(source, columns=[col.SAMPLE_ID, col.PDQ_CODES, col.PDQ_QUALITY, *colour])
             .drop_nulls(col.PDQ_CODES))
    rows = binary_matrix(frame[col.PDQ_CODES].to_arrow(), np.uint8, row_width(config))
    codes, quality = unpack_rows(rows, frame[col.PDQ_QUALITY].cast(pl.Int64).to_numpy(), config)
    indexed = quality >= config.min_quality
    queried = indexed.copy()
    queried[:, 1:variants(config)] = False  # rotated copies of the full region are matched in the index only
    signatures = np.zeros((frame.height, HUE_BINS), np.float16)
    if colour:
        present = frame[col.PDQ_COLOUR].is_not_null().to_numpy()
        signatures[present] = colour_signatures(frame[col.PDQ_COLOUR].drop_nulls().to_arrow())
    return frame[col.SAMPLE_ID], codes, indexed, queried, signatures


def sample_codes(sources: list[Path], config: PdqConfig, rate: float, seed: int) -> tuple[int, np.ndarray]:
    """Task: (indexed codes in a batch of files, a Bernoulli(rate) sample of them (m, 32)); file k of the
    batch draws with ``seed + k``, so the sample does not depend on the batching."""
    count, samples = 0, [np.empty((0, CODE_BYTES), np.uint8)]
    for k, source in enumerate(sources):
        _, codes, indexed, _, _ = read_codes(source, config)
        usable = codes[indexed]
        count += len(usable)
        samples.append(usable[np.random.default_rng(seed + k).random(len(usable)) < rate])
    return count, np.concatenate(samples)


def exact_pairs(config: PdqConfig, search: SearchConfig, files: list[Path], out: Path) -> int:
    """Task: the one-process detector on every code (at most ``search.exact_max`` indexed ones)."""
    ids = pl.concat([pl.read_parquet(f, columns=[col.SAMPLE_ID])[col.SAMPLE_ID] for f in files])
    return write_pairs(one_process_pdq_pairs(config, search, files, SampleIndex.of(ids)), out / "pdq-00000.parquet")


def assign_codes(sources: list[Path], config: PdqConfig, centroids: np.ndarray, nprobe: int, buckets: int,
                 out: Path, part: str) -> int:
    """Task: a batch of files' indexed codes -> (their nearest list, member), query codes -> (each of
    ``nprobe`` lists, prober), bucketed by list. Returns the rows written."""
    quantizer = faiss.IndexBinaryFlat(BITS)
    quantizer.add(np.ascontiguousarray(centroids))
    rows = concat(_probes(source, config, quantizer, nprobe) for source in sources)
    return write_buckets(rows, pl.col("list"), buckets, out, part)


def _probes(source: Path, config: PdqConfig, quantizer: faiss.IndexBinaryFlat, nprobe: int) -> pl.DataFrame:
    """One file's member and prober rows (``listjoin.LIST_SCHEMA`` + the code's ``slot`` and its image's
    ``colour`` signature)."""
    ids, codes, indexed, queried, signatures = read_codes(source, config)
    owner = np.broadcast_to(np.arange(len(ids))[:, None], indexed.shape)
    slot = np.broadcast_to(np.arange(indexed.shape[1], dtype=np.int16)[None, :], indexed.shape)
    raw = np.ascontiguousarray(signatures.astype("<f2")).view(np.uint8)
    colours = pl.Series("colour", pa.Array.from_buffers(pa.binary(COLOUR_BYTES), len(raw), [None, pa.py_buffer(
        raw.tobytes())]).cast(pa.binary()))
    rows = []
    for mask, probes, member in ((indexed, 1, True), (queried, nprobe, False)):
        found = np.ascontiguousarray(codes[mask])
        if len(found):
            lists = quantizer.search(found, probes)[1]
            probed = listjoin._probe_rows(ids.gather(owner[mask]), found, lists, member)
            rows.append(probed.with_columns(pl.Series("slot", np.repeat(slot[mask], probes), pl.Int16),
                                            colours.gather(np.repeat(owner[mask], probes))))
    return concat(rows)


def join_lists(source: Path, bucket: int, max_distance: int, raw_buckets: int, out: Path, config: PdqConfig,
               hits: bool = False) -> int:
    """Task: each list's probers range-searched among its members (Hamming <= ``max_distance``); hits
    between two codes of one image, or between two images whose colours are not ``dedup.pdq.compatible``,
    dropped; ordered pairs sent on to the bucket of their smaller id (``hits``: every hit with its query code
    and distance, to the bucket of the querying sample)."""
    found = []
    for members, probers in listjoin._lists(source, bucket):
        if members.is_empty() or probers.is_empty():
            continue
        index = faiss.IndexBinaryFlat(BITS)
        index.add(binary_matrix(members["vector"].to_arrow(), np.uint8, CODE_BYTES))
        lims, dist, hit = index.range_search(binary_matrix(probers["vector"].to_arrow(), np.uint8, CODE_BYTES),
                                             max_distance + 1)  # faiss returns distances strictly below
        q = np.repeat(np.arange(probers.height), np.diff(lims.astype(np.int64)))
        if config.min_colour_overlap > 0 and len(q):
            keep = compatible(colour_signatures(probers["colour"].gather(q).to_arrow()),
                              colour_signatures(members["colour"].gather(hit).to_arrow()), config)
            q, hit, dist = q[keep], hit[keep], dist[keep]
        a, b = probers[col.SAMPLE_ID].gather(q), members[col.SAMPLE_ID].gather(hit)
        if hits:
            found.append(pl.DataFrame({"a": a, "b": b, "slot": probers["slot"].gather(q), "distance": dist},
                                      schema=pdqverify.HIT_SCHEMA).filter(pl.col("a") != pl.col("b")))
        else:
            found.append(pl.DataFrame({"a": a, "b": b, listjoin.SIMILARITY: (1.0 - dist.astype(np.float32) / BITS)},
                                      schema=listjoin.RAW_SCHEMA))
    if hits:
        frame = pl.concat(found) if found else pl.DataFrame(schema=pdqverify.HIT_SCHEMA)
        return write_buckets(frame, pl.col("a"), raw_buckets, out, f"{bucket:05d}")
    return listjoin._write_raw(found, raw_buckets, out, f"{bucket:05d}", by="lo")
