"""The partitioned pair finders: one per detector, each writes dedup/pairs/<detector>-NNNNN.parquet.

Each finder gets the run's ``dedup.plan.Plan`` (bucket sizing, batches of input files, the
executor) and returns its pair count. Exact keys and LSH band keys are shuffles grouped per bucket
(``dedup.keyjoin`` over ``dedup.shuffle``); pHash and SSCD are IVF lists as buckets (``dedup.listjoin``,
on a GPU with ``dedup.partitions.join_gpus``); semantic and PDQ live in ``dedup.semjoin`` / ``dedup.pdqjoin``.
A detector's row in ``dedup.config.DETECTORS`` names its finder here; ``FINDERS`` maps each detector to it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from dedup import detectors, keyjoin, keypointjoin, listjoin, pdqjoin, semjoin, shuffle
from dedup.artefacts import SampleIndex
from dedup.config import DETECTORS, DedupConfig, LayoutConfig, PdqConfig
from dedup.layout import LAYOUT_BYTES, search_vectors, unpack
from dedup.lsh import band_shape
from dedup.plan import Plan
from dedup.survivors import centroid_dir
from manifests import schema as col

ID_BYTES = 24  # a sample_id string in Arrow: offsets + ~12 characters
KEY_BYTES = 64  # a narrow shuffled row (ids, a key, a list, a similarity), with hash-table overhead


def columns(files: list[Path]) -> set[str]:
    return {name for f in files for name in pq.ParquetFile(f).schema_arrow.names}


def require(key: str, files: list[Path]) -> None:
    if files and key not in columns(files):  # no score file: no image was staged, nothing to pair
        raise RuntimeError(f"the score phase wrote no {key!r} column: re-run the score phase with its "
                           f"dedup stage enabled (run the phases in order: score, then dedup)")


def exact_pairs(plan: Plan, key: str, detector: str, files: list[Path], only_success: bool) -> int:
    require(key, files)
    keyed, buckets = plan.fresh(f"keys-{detector}"), plan.buckets(plan.rows, KEY_BYTES)
    plan.each(keyjoin.shuffle_keys, [(batch, key, only_success, buckets, keyed, f"{i:05d}")
                                      for i, batch in enumerate(plan.batches(files, KEY_BYTES))])
    return sum(plan.each(keyjoin.group_exact, [(keyed, b, detector, plan.layout.pairs_dir) for b in range(buckets)]))


def minhash_pairs(plan: Plan) -> int:
    config, files = plan.config.minhash, plan.layout.score_files()
    bands, _ = band_shape(config.num_perm, config.stored_from, config.bands, config.false_negative_weight)
    band_buckets = plan.buckets(plan.rows * bands, KEY_BYTES)
    # a signature bucket holds the signatures and, in the join, the candidates carrying one
    sig_buckets = plan.buckets(plan.rows, 2 * (4 * config.num_perm + ID_BYTES))
    bands_dir, sigs, cand, half = (plan.fresh(n) for n in ("bands", "signatures", "candidates", "half"))
    row_bytes = bands * KEY_BYTES + 4 * config.num_perm + ID_BYTES  # its band rows and its signature
    plan.each(keyjoin.shuffle_bands, [(batch, config, band_buckets, sig_buckets, bands_dir, sigs, f"{i:05d}")
                                      for i, batch in enumerate(plan.batches(files, row_bytes))])
    plan.each(keyjoin.group_bands, [(bands_dir, b, config.max_bucket, sig_buckets, cand) for b in range(band_buckets)])
    plan.each(keyjoin.attach_first, [(cand, sigs, b, sig_buckets, half) for b in range(sig_buckets)])
    return sum(plan.each(keyjoin.verify_second, [(half, sigs, b, config, plan.layout.pairs_dir)
                                                 for b in range(sig_buckets)]))


def _sample(plan: Plan, column: str, size: int) -> tuple[int, pl.DataFrame]:
    files = plan.layout.score_files()
    rate = min(1.0, size / max(1, sum(plan.file_rows(f) for f in files)))
    batches = plan.batches(files, KEY_BYTES)
    firsts = np.cumsum([plan.config.search.seed] + [len(b) for b in batches])  # file i draws with seed + i
    found = plan.each(listjoin.sample_descriptors, [(b, column, rate, int(s)) for b, s in zip(batches, firsts)])
    frames = [s for _, s in found if s.height]
    return sum(c for c, _ in found), (pl.concat(frames) if frames else pl.DataFrame())


def phash_pairs(plan: Plan) -> int:
    config, search, files = plan.config.phash, plan.config.search, plan.layout.score_files()
    count, sample = _sample(plan, col.PHASH, search.train_sample)
    if count <= search.exact_max:  # the one-process exact search, in one task: identical pairs
        return sum(plan.each(exact_search_pairs, [("phash", plan.config, files, plan.layout.pairs_dir)]))
    nlist, nprobe = listjoin.list_shape(count, search, binary=True)
    codes, _ = listjoin.phash_codes(sample[col.PHASH], config.bits // 8)
    centroids = listjoin.binary_lists(codes, nlist, search.seed)
    copies = nprobe * (2 if config.mirror else 1)
    lists, raw = plan.fresh("phash-lists"), plan.fresh("phash-raw")
    list_buckets = plan.buckets(count * copies, KEY_BYTES + config.bits // 8)
    raw_buckets = plan.buckets(count, KEY_BYTES)
    row_bytes = copies * (KEY_BYTES + config.bits // 8)
    plan.each(listjoin.assign_phash, [(batch, config, centroids, nprobe, list_buckets, lists, f"{i:05d}")
                                      for i, batch in enumerate(plan.batches(files, row_bytes))])
    max_distance = math.floor((1.0 - config.stored_from) * config.bits + 1e-9)
    plan.each(listjoin.join_phash_lists, [(lists, b, max_distance, config.bits, raw_buckets, raw)
                                          for b in range(list_buckets)])
    return sum(plan.each(listjoin.merge_pairs, [(raw, b, "phash", plan.layout.pairs_dir) for b in range(raw_buckets)]))


def sscd_pairs(plan: Plan) -> int:
    config, search, files = plan.config.sscd, plan.config.search, plan.layout.score_files()
    count, _ = _sample(plan, col.SSCD_EMBEDDING, 0)
    if count <= search.exact_max:
        return sum(plan.each(exact_search_pairs, [("sscd", plan.config, files, plan.layout.pairs_dir)]))
    nlist, nprobe = listjoin.list_shape(count, search, binary=False)
    _, sample = _sample(plan, col.SSCD_EMBEDDING, nlist * search.train_per_list)
    vectors = listjoin.binary_matrix(sample[col.SSCD_EMBEDDING].to_arrow(), np.float32, config.dims)
    centroids = listjoin.float_lists(vectors, nlist, search)
    lists, raw, capped = plan.fresh("sscd-lists"), plan.fresh("sscd-raw"), plan.fresh("sscd-capped")
    list_buckets = plan.buckets(count * nprobe, KEY_BYTES + 4 * config.dims)
    raw_buckets = plan.buckets(count * search.k, KEY_BYTES)
    row_bytes = (nprobe + 1) * (KEY_BYTES + 4 * config.dims)  # its vector, and a copy per probed list
    plan.each(listjoin.assign_sscd, [(batch, config, search, centroids, nprobe, list_buckets, lists, f"{i:05d}")
                                     for i, batch in enumerate(plan.batches(files, row_bytes))])
    gpus = plan.config.partitions.join_gpus
    plan.each(listjoin.join_sscd_lists, [(lists, b, config.stored_from, config.dims, search.k, raw_buckets, raw,
                                          "cuda" if gpus else None) for b in range(list_buckets)], gpus=gpus)
    plan.each(listjoin.cap_queries, [(raw, b, search.k, raw_buckets, capped) for b in range(raw_buckets)])
    return sum(plan.each(listjoin.merge_pairs, [(capped, b, "sscd", plan.layout.pairs_dir)
                                                for b in range(raw_buckets)]))


def layout_pairs(plan: Plan) -> int:
    """The layout detector: below ``search.exact_max`` layouts the one-process search in one task; beyond, the
    layouts as IVF lists (``listjoin.assign_layout``, ``join_layout_lists``), each query's ``k`` best kept: lists
    of the search vectors and, for the photometric match, lists of the photometric vectors after them."""
    config, pdq, search, files = plan.config.layout, plan.config.pdq, plan.config.search, plan.layout.score_files()
    count = sum(plan.each(count_layouts, [(batch, config, pdq) for batch in plan.batches(files, KEY_BYTES)]))
    if count <= search.exact_max:
        return sum(plan.each(exact_search_pairs, [("layout", plan.config, files, plan.layout.pairs_dir)]))
    nlist, nprobe = listjoin.list_shape(count, search, binary=False)
    _, sample = _sample(plan, col.LAYOUT_CODE, nlist * search.train_per_list)
    layouts = listjoin.binary_matrix(sample[col.LAYOUT_CODE].to_arrow(), np.uint8, LAYOUT_BYTES)
    centroids = listjoin.float_lists(search_vectors(unpack(layouts)), nlist, search)
    tone = listjoin.tone_lists(layouts, config, nlist, search)
    copies = nprobe * (1 if tone is None else 2)
    lists, raw, capped = plan.fresh("layout-lists"), plan.fresh("layout-raw"), plan.fresh("layout-capped")
    list_buckets = plan.buckets(count * copies, KEY_BYTES + LAYOUT_BYTES)
    raw_buckets = plan.buckets(count * search.k, KEY_BYTES)
    row_bytes = (copies + 1) * (KEY_BYTES + LAYOUT_BYTES)
    plan.each(listjoin.assign_layout, [(batch, config, pdq, search, centroids, tone, nprobe, list_buckets, lists,
                                        f"{i:05d}") for i, batch in enumerate(plan.batches(files, row_bytes))])
    plan.each(listjoin.join_layout_lists, [(lists, b, config, search.k, len(centroids), raw_buckets, raw)
                                           for b in range(list_buckets)])
    plan.each(listjoin.cap_queries, [(raw, b, search.k, raw_buckets, capped) for b in range(raw_buckets)])
    return sum(plan.each(listjoin.merge_pairs, [(capped, b, "layout", plan.layout.pairs_dir)
                                                for b in range(raw_buckets)]))


def count_layouts(sources: list[Path], config: LayoutConfig, pdq: PdqConfig) -> int:
    """Task: how many layouts a batch of score files holds."""
    return sum(listjoin.layout_rows(source, config, pdq).height for source in sources)


def exact_search_pairs(detector: str, config: DedupConfig, files: list[Path], out: Path) -> int:
    """Task: the one-process detector on every descriptor (at most ``search.exact_max`` of them)."""
    column = next(d.column for d in DETECTORS if d.name == detector)
    ids = pl.concat([listjoin.read_descriptors(f, column)[col.SAMPLE_ID] for f in files])
    index = SampleIndex.of(ids)
    if detector == "phash":
        pairs = detectors.phash_pairs(config.phash, config.search, files, index)
    elif detector == "layout":
        pairs = detectors.layout_pairs(config.layout, config.pdq, config.search, files, index)
    else:
        pairs = detectors.sscd_pairs(config.sscd, config.search, files, index)
    return shuffle.write_pairs(pairs, out / f"{detector}-00000.parquet")


def sha256_pairs(plan: Plan) -> int:
    return exact_pairs(plan, col.SHA256, "sha256", plan.layout.staged_row_files(), True)


def pixel_hash_pairs(plan: Plan) -> int:
    return exact_pairs(plan, col.PIXEL_HASH, "pixel_hash", plan.layout.score_files(), False)


def semantic_pairs(plan: Plan) -> int:
    return semjoin.semantic_pairs(plan, centroid_dir(plan.layout))


def found_with_pdq(plan: Plan) -> int:
    """pdq_verified: its pairs are found in the pdq finder's pass (``pdqjoin.pdq_pairs``), none here."""
    return 0


pdq_pairs, keypoint_pairs = pdqjoin.pdq_pairs, keypointjoin.keypoint_pairs
# Each detector's finder, as its row of dedup.config.DETECTORS names it (a KeyError here: a row names none).
FINDERS: dict[str, Callable[[Plan], int]] = {d.name: globals()[d.finder] for d in DETECTORS}
