"""The one-process dedup, the reference the partitioned engine (``dedup.partitioned``) is tested and benched
against: duplicate pairs from every enabled detector -> clusters -> dedup/pairs.parquet and
dedup/duplicates.parquet, each detector's kernel (``dedup.detectors``) run once over the whole run.

It also holds what tests check any engine's output with: the keep invariant, k-means in one call, the
duplicate columns redone and joined back in one call, and caption shingling one caption at a time.

Not production: the dedup phase always runs ``dedup.partitioned`` (with ``dedup.partitions.enabled`` false,
its tasks one after another in the driver). Readers still accept these single files (``RunLayout.pairs_files``),
as runs written before the one engine have them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl

from dedup import keypoints
from dedup.artefacts import SampleIndex, binary_matrix, iter_column
from dedup.cluster import (PAIRS_SCHEMA, RESOLUTION, SAMPLE_A, SAMPLE_B, SIMILARITY, DETECTOR, cluster, cluster_counts,
                           equal_key_pairs, named_pairs)
from dedup.config import DedupConfig, MinHashConfig, PdqConfig, SemanticConfig, ToneConfig
from dedup.keep import CAPTION, EXACT, IMAGE, Classes, group_rows
from dedup.lsh import band_frame, band_keys, band_shape, candidate_pairs, verify
from dedup.detectors import layout_pairs, pdq_pairs, phash_pairs, scores, sscd_pairs
from dedup.semantic import CENTROID_DISTANCE, assign, semantic_pairs, train_centroids
from dedup.shingles import normalised
from dedup.survivors import (ELIGIBLE, Eligibility, centroid_dir, centroid_path, duplicates, eligible_path,
                             join_duplicates, keep_order, without_duplicates)
from manifests import schema as col
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import DupKind, Status


def staged_rows(layout: RunLayout) -> pl.LazyFrame:
    files = [str(p) for p in layout.staged_row_files()]
    if not files:
        return pl.LazyFrame(schema={col.SAMPLE_ID: pl.String, col.SHA256: pl.String, RESOLUTION: pl.Int64})
    return (pl.scan_parquet(files).filter(pl.col(col.STATUS) == Status.SUCCESS)
            .select(col.SAMPLE_ID, col.SHA256,
                    (pl.col(col.ORIGINAL_WIDTH).cast(pl.Int64) * pl.col(col.ORIGINAL_HEIGHT)).alias(RESOLUTION)))


# The one-process finders no bucket task calls: the partitioned engine has keyjoin/keypointjoin for them.

def caption_pairs(config: MinHashConfig, files: list[Path], index: SampleIndex, work: Path) -> pl.DataFrame:
    """MinHash LSH over every signature of the run; candidates verified against ``stored_from``."""
    work.mkdir(parents=True, exist_ok=True)
    bands, rows = band_shape(config.num_perm, config.stored_from, config.bands, config.false_negative_weight)
    signatures = np.lib.format.open_memmap(work / "minhash.npy", mode="w+", dtype=np.uint32,
                                           shape=(max(len(index), 1), config.num_perm))
    band_files = []
    for k, (ids, values) in enumerate(iter_column(files, col.CAPTION_MINHASH)):
        pos, sigs = index.positions(ids), binary_matrix(values, np.uint32, config.num_perm)
        signatures[pos] = sigs
        band_files.append(work / f"bands-{k:05d}.parquet")
        band_frame(pos, band_keys(sigs, bands, rows)).write_parquet(band_files[-1])
    if not band_files:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    candidates = candidate_pairs(band_files, config.max_bucket).collect(engine="streaming")
    verified = verify(candidates, signatures, config.stored_from)
    return named_pairs(index, verified["a"].to_numpy(), verified["b"].to_numpy(),
                       verified[SIMILARITY].to_numpy(), "minhash")


def keypoint_pairs(config: PdqConfig, files: list[Path], index: SampleIndex,
                   tone: ToneConfig | None = None) -> pl.DataFrame:
    """Images sharing ``verify.keypoints.min_shared`` keypoint keys, verified (``dedup.keypoints.copy_score``, with
    ``tone`` for keypoint-poor pairs: ``keypoints.placement_tone``)."""
    keys = config.verify.keypoints
    rows = [keypoints.key_rows(ids, values.to_pylist(), keys) for ids, values in iter_column(files, col.ORB_FEATURES)]
    if not rows:
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    shared = keypoints.shared_keys(pl.concat(rows), keys.max_bucket, keys.refine_bits, keys.refine_levels)
    found = keypoints.candidates(shared, keys.min_shared, keys.max_candidates).collect()
    a, b = index.positions(found["a"]), index.positions(found["b"])
    sim = scores(files, index, a, b, config, lambda x, y: keypoints.copy_score(x, y, config.verify, tone))
    ok = sim > 0
    return named_pairs(index, a[ok], b[ok], sim[ok], "keypoints")


def semantic_finder(config: DedupConfig, layout: RunLayout, files: list[Path], index: SampleIndex,
                    work: Path) -> pl.DataFrame:
    pairs, distances = semantic_pairs(config.semantic, files, index, work / "semantic")
    write_parquet(distances.to_arrow(), centroid_path(layout))
    return pairs


def keep_scores(layout: RunLayout, rows: pl.LazyFrame, order: tuple[str, ...]) -> pl.DataFrame:
    """sample_id + the keep-policy columns that exist: eligibility, score-phase scores, original resolution."""
    frame = rows.select(col.SAMPLE_ID, RESOLUTION)
    if eligible_path(layout).exists():
        frame = frame.join(pl.scan_parquet(eligible_path(layout)), on=col.SAMPLE_ID, how="left")
    if CENTROID_DISTANCE in order and centroid_path(layout).exists():
        frame = frame.join(pl.scan_parquet(centroid_path(layout)), on=col.SAMPLE_ID, how="left")
    files = [str(p) for p in layout.score_files()]
    if files:
        scores = pl.scan_parquet(files)
        present = [c for c in order if c in scores.collect_schema().names() and c not in col.ARTEFACT_COLUMNS]
        if present:
            frame = frame.join(scores.select(col.SAMPLE_ID, *present), on=col.SAMPLE_ID, how="left")
    return frame.collect()


def find_pairs(config: DedupConfig, layout: RunLayout, rows: pl.LazyFrame, work: Path,
               names: tuple[str, ...] | None = None) -> tuple[pl.DataFrame, dict]:
    """The pairs of every enabled detector (or of ``names`` only), and per-detector counts and times."""
    files = layout.score_files()
    scores = pl.scan_parquet([str(f) for f in files]) if files else None
    index = SampleIndex.of(rows.select(col.SAMPLE_ID).collect()[col.SAMPLE_ID])
    finders = {
        "sha256": lambda: equal_key_pairs(rows, col.SHA256, "sha256"),
        "pixel_hash": lambda: equal_key_pairs(_require(scores, col.PIXEL_HASH), col.PIXEL_HASH, "pixel_hash"),
        "minhash": lambda: caption_pairs(config.minhash, files, index, work),
        "phash": lambda: phash_pairs(config.phash, config.search, files, index),
        "sscd": lambda: sscd_pairs(config.sscd, config.search, files, index),
        "pdq": lambda: pdq_pairs(config.pdq, config.search, files, index),  # pdq_verified pairs too
        "layout": lambda: layout_pairs(config.layout, config.pdq, config.search, files, index),
        "keypoints": lambda: keypoint_pairs(config.pdq, files, index, keypoints.placement_tone(config)),
        "semantic": lambda: semantic_finder(config, layout, files, index, work),
    }
    found, stats = [], {}
    for name in (n for n in names or config.enabled_detectors() if n in finders):
        start = time.perf_counter()
        pairs = finders[name]()
        found.append(pairs)
        stats[name] = {"pairs": pairs.height, "wall_s": round(time.perf_counter() - start, 3)}
    pairs = pl.concat(found) if found else pl.DataFrame(schema=PAIRS_SCHEMA)
    return pairs.sort(SAMPLE_A, SAMPLE_B, DETECTOR), stats


def _require(scores: pl.LazyFrame | None, column: str) -> pl.LazyFrame:
    if scores is None or column not in scores.collect_schema().names():
        raise RuntimeError(f"the score phase wrote no {column!r} column: re-run the score phase with its "
                           f"dedup stage enabled (run the phases in order: score, then dedup)")
    return scores


def run_dedup(config: DedupConfig, layout: RunLayout, eligible: pl.DataFrame | None = None) -> dict:
    """Write dedup/pairs.parquet and dedup/duplicates.parquet; with no detector enabled, write nothing.

    ``eligible`` (sample_id, eligible: bool) says which rows pass every other rule; the keep policy
    ranks them first, so a cluster is not represented by a sample the decision then rejects.
    """
    layout.pairs.unlink(missing_ok=True)
    layout.duplicates.unlink(missing_ok=True)
    eligible_path(layout).unlink(missing_ok=True)
    centroid_path(layout).unlink(missing_ok=True)
    shutil.rmtree(centroid_dir(layout), ignore_errors=True)  # a partitioned run's must not shadow this run's
    detectors = config.enabled_detectors()
    if not detectors:
        return {"detectors": []}
    work = layout.pairs.parent / "work"
    shutil.rmtree(work, ignore_errors=True)
    try:
        rows = staged_rows(layout)
        pairs, stats = find_pairs(config, layout, rows, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_parquet(pairs.to_arrow(), layout.pairs)
    if eligible is not None:
        write_parquet(eligible.select(col.SAMPLE_ID, ELIGIBLE).to_arrow(), eligible_path(layout))
    return {"detectors": detectors, "pairs": stats, **recluster(config, layout)}


def recluster(config: DedupConfig, layout: RunLayout) -> dict:
    """dedup/pairs.parquet + scores -> dedup/duplicates.parquet with ``config``'s thresholds and keep
    policy; no descriptor is read. A threshold can be loosened only down to the detector's store_threshold."""
    pairs = pl.read_parquet(layout.pairs)
    order = keep_order(config)
    scores = keep_scores(layout, staged_rows(layout), order)
    duplicates = cluster(pairs, config.thresholds(), scores, order, config.keep.mode)
    write_parquet(duplicates.to_arrow(), layout.duplicates)
    return cluster_counts(duplicates)


# --- the keep policy's greedy walk, one node at a time --------------------------------------------------

def _adjacency(n: int, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return group_rows(np.concatenate([a, b]), np.concatenate([b, a]), n)


def keep_greedy_walk(order: np.ndarray, classes: Classes, a: np.ndarray, b: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """``dedup.keep.keep_greedy`` as the one-by-one walk it was before it ran in rounds: the reference its
    rounds are checked against. Survivor of each node, walking nodes best-ranked first (``order``).

    A node is kept unless its image class or caption class already keeps a sample, or an image link
    of its image class or a caption link of its caption class reaches a class that keeps one; then
    it duplicates the best-ranked of those kept samples.
    """
    n = len(order)
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    image = (kind == IMAGE) | (kind == EXACT) | (kind == DupKind.SEMANTIC)  # semantic: a look-alike picture
    img_dst, img_ptr = _adjacency(n, classes.image[a[image]], classes.image[b[image]])
    cap = kind == CAPTION
    cap_dst, cap_ptr = _adjacency(n, classes.caption[a[cap]], classes.caption[b[cap]])
    # The walk is sequential, so it runs on Python lists: per node a few list reads, where numpy's
    # per-call overhead on arrays of a handful of entries cost ~20 us a node.
    image_of, caption_of, rank_of = classes.image.tolist(), classes.caption.tolist(), rank.tolist()
    img_dst, img_ptr, cap_dst, cap_ptr = img_dst.tolist(), img_ptr.tolist(), cap_dst.tolist(), cap_ptr.tolist()
    kept_image, kept_caption = [-1] * n, [-1] * n  # per image / caption class root: the sample it keeps
    survivor = [-1] * n
    for v in order.tolist():
        ic, cc = image_of[v], caption_of[v]
        best, best_rank = -1, n  # the best-ranked kept sample reached (ranks are distinct)
        for k in (kept_image[ic], kept_caption[cc], *[kept_image[c] for c in img_dst[img_ptr[ic]:img_ptr[ic + 1]]],
                  *[kept_caption[c] for c in cap_dst[cap_ptr[cc]:cap_ptr[cc + 1]]]):
            if k >= 0 and rank_of[k] < best_rank:
                best, best_rank = k, rank_of[k]
        if best >= 0:
            survivor[v] = best
        else:
            survivor[v] = kept_image[ic] = kept_caption[cc] = v
    return np.array(survivor, dtype=np.int64)


# --- what the tests hold an engine's output to ----------------------------------------------------------

def check_keep_invariant(pairs: pl.DataFrame, thresholds: dict[str, float], kept: pl.Series,
                         rows: pl.DataFrame | None = None, keys: tuple[str, ...] = (col.SHA256, col.PIXEL_HASH),
                         limit: int = 20) -> list[str]:
    """Violations of the keep invariant (empty when it holds), at most ``limit`` of them.

    ``kept``: the sample_ids kept (by dedup, or by the whole decision: any subset of a valid kept
    set is valid). No two of them may be a stored pair at or above its detector's threshold, and, when
    ``rows`` (sample_id + ``keys`` columns) is given, no two may share a non-null value of a key.
    """
    kept = kept.unique()
    limit_of = pl.col("detector").replace_strict(thresholds, default=None, return_dtype=pl.Float64)
    linked = pairs.filter(pl.col("sample_a").is_in(kept.implode()) & pl.col("sample_b").is_in(kept.implode())
                          & (pl.col("similarity").cast(pl.Float64) >= limit_of - 1e-6))
    problems = [f"kept {a} and {b} are a {d} pair at similarity {s:.4g}"
                for a, b, d, s in linked.select("sample_a", "sample_b", "detector", "similarity")
                .head(limit).iter_rows()]
    for key in keys if rows is not None else ():
        if key not in rows.columns:
            continue
        shared = (rows.filter(pl.col(col.SAMPLE_ID).is_in(kept.implode())).drop_nulls(key).group_by(key)
                  .agg(pl.col(col.SAMPLE_ID).sort()).filter(pl.col(col.SAMPLE_ID).list.len() > 1))
        problems += [f"kept {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''} share {key} {value}"
                     for value, ids in shared.sort(key).head(limit).iter_rows()]
    return problems[:limit]


def kmeans_labels(vectors: np.ndarray, k: int, config: SemanticConfig) -> tuple[np.ndarray, np.ndarray]:
    """(label, cosine to its centroid) of each unit row; spherical k-means trained on a seeded sample."""
    size = min(len(vectors), max(k, config.train_sample))
    sample = np.sort(np.random.default_rng(config.seed).choice(len(vectors), size=size, replace=False))
    return assign(vectors, train_centroids(vectors[sample], k, config))


def with_duplicates(frame: pl.LazyFrame, pairs: pl.DataFrame | None, config: DedupConfig,
                    eligibility: Eligibility) -> pl.LazyFrame:
    """``frame`` with its duplicate columns redone from ``pairs`` (None: the run stored no pairs, and
    the columns ``frame`` has, if any, stand as they are). Decide on the result."""
    if pairs is None:
        return frame
    return join_duplicates(without_duplicates(frame), duplicates(frame, pairs, config, eligibility))


def normalise(caption: str) -> list[str]:
    """The words of one caption, by the same expression as the batch path."""
    text = normalised([caption])[0]
    return text.split(" ") if text else []


def shingles(words: list[str], ngram: int) -> list[str]:
    """Word n-grams joined by a space (repeats kept: a minimum ignores them); a caption shorter than
    ``ngram`` is one shingle of all its words. The scalar reference of ``Shingles.of``."""
    if len(words) <= ngram:
        return [" ".join(words)]
    return list(map(" ".join, zip(*(words[k:] for k in range(ngram)))))
