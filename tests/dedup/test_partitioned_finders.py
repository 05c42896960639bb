"""The partitioned semantic and PDQ finders equal their one-process references on generated runs,
whatever the number of score files and buckets: same pairs, same centroid distances, same survivors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from dedup.config import DedupConfig, PdqConfig
from dedup.partitioned import run_partitioned
from dedup.pdq import HUE_BINS
from dedup.plan import local_tasks
from support.dedup_reference import run_dedup
from dedup.survivors import centroid_dir, centroid_path
from support.scalegen import sources, write_part
from dedup.semantic import CENTROID_DISTANCE
from dedup.survivors import with_centroid_distance
from manifests import schema as col
from manifests.layout import RunLayout
from tests.dedup.runs import UNVERIFIED

ROWS = 2400
DIM = 32


def generated_run(root, parts: int, columns) -> RunLayout:
    """scalegen rows in ``parts`` files, each score file with the columns ``columns(index)`` makes."""
    layout = RunLayout.at(root)
    bounds = np.linspace(0, ROWS, parts + 1).astype(int)
    for part, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        write_part(layout, part, int(start), int(stop))
        path = layout.scores_dir / f"{part:05d}.parquet"
        frame = pl.read_parquet(path)
        pl.concat([frame, columns(np.arange(start, stop))], how="horizontal").write_parquet(path)
    return layout


def _noise(index: np.ndarray, salt: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.stack([np.random.default_rng(salt * 10**7 + int(i)).normal(size=shape) for i in index])


def embeddings(index: np.ndarray) -> pl.DataFrame:
    """float16 clip_embedding: copies (scalegen's phash and minhash sources) are their source's vector plus
    noise (cosine ~0.95-0.99); every 50th row has an all-zero embedding (CLIP could not score it)."""
    src = np.where(sources(index, "phash") != index, sources(index, "phash"), sources(index, "minhash"))
    vectors = _noise(src, 1, (DIM,)) + _noise(index, 2, (DIM,)) * (src != index)[:, None] * 0.2
    vectors[index % 50 == 7] = 0
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float16).ravel()), DIM)
    return pl.from_arrow(pa.table({col.CLIP_EMBEDDING: column}))


def semantic_config(buckets: int, keep: str, **semantic) -> DedupConfig:
    return DedupConfig.model_validate({
        "exact": {"enabled": True}, "keep": {"mode": "greedy"}, "partitions": {"buckets": buckets},
        "semantic": {"enabled": True, "keep": keep, "rows_per_cluster": 100, "train_sample": 900, **semantic}})


def outputs(layout: RunLayout) -> tuple[pl.DataFrame, pl.DataFrame]:
    pairs = pl.read_parquet(layout.pairs_files()).sort("sample_a", "sample_b", "detector")
    return pairs, pl.read_parquet(layout.duplicates_files()).sort(col.SAMPLE_ID)


@pytest.fixture(scope="module")
def semantic_reference(tmp_path_factory) -> dict:
    out = {}
    for keep, cap in (("least_prototypical", 64), ("policy", 1)):
        layout = generated_run(tmp_path_factory.mktemp(f"semantic-{keep}"), 1, embeddings)
        run_dedup(semantic_config(1, keep, max_neighbours=cap), layout)
        out[keep] = (*outputs(layout), pl.read_parquet(centroid_path(layout)))
    return out


@pytest.mark.parametrize("parts,keep", [(1, "least_prototypical"), (3, "least_prototypical"),
                                        (7, "least_prototypical"), (3, "policy")])
def test_partitioned_semantic_equals_one_process(tmp_path, semantic_reference, parts, keep):
    """k-means sample, centroids, within-cluster search with its max_neighbours cap, centroid distances
    and the least_prototypical survivors all match the one-process run (``policy`` runs with cap 1)."""
    layout = generated_run(tmp_path, parts, embeddings)
    run_partitioned(semantic_config(parts, keep, max_neighbours=64 if keep != "policy" else 1), layout)
    pairs, duplicates = outputs(layout)
    want_pairs, want_duplicates, want_distances = semantic_reference[keep]
    semantic = want_pairs.filter(pl.col("detector") == "semantic")
    assert semantic.height > 100 and semantic["similarity"].min() < 0.97  # stored below eps for re-clustering
    assert pairs.equals(want_pairs)
    assert duplicates.equals(want_duplicates)
    distances = pl.read_parquet(sorted(centroid_dir(layout).glob("*.parquet"))).sort(col.SAMPLE_ID)
    assert distances.equals(want_distances) and distances.height == ROWS - ROWS // 50
    assert not centroid_path(layout).exists()


def test_least_prototypical_ranks_by_the_partitioned_centroid_distances(tmp_path, semantic_reference):
    """The survivors differ between keep policies: the partitioned survivors step does read the distances."""
    layout = generated_run(tmp_path, 3, embeddings)
    run_partitioned(semantic_config(3, "least_prototypical", max_neighbours=1), layout)
    _, duplicates = outputs(layout)
    _, policy, _ = semantic_reference["policy"]
    kept = duplicates.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID]
    assert set(kept) != set(policy.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID])
    # decide, tune and re-export rank by the part files too (they pass the one-process file's path)
    frame = pl.LazyFrame({col.SAMPLE_ID: ["00000000007", "00000000008"]})
    config = semantic_config(3, "least_prototypical")
    ranked = with_centroid_distance(frame, centroid_path(layout), config).collect()
    assert ranked[CENTROID_DISTANCE].null_count() == 1  # row 7 has no embedding; row 8 has its distance


# --- PDQ -------------------------------------------------------------------------------------------

def pdq_columns(index: np.ndarray) -> pl.DataFrame:
    """pdq_codes (8 dihedral + 2 crop codes, default config layout) and pdq_quality. A copy (scalegen's
    phash sources) re-encodes its source (every code 0-40 bits off), is a rotation/flip of it (its full
    code is one of the source's other dihedral variants) or a crop (its full code is the source's 0.8
    crop); a low-quality full region (every 40th row) and low-quality crops only match through other
    regions; every 97th row has no codes (it did not decode)."""
    src = sources(index, "phash")
    rows, quality, colours = [], [], []
    for i, s in zip(index.tolist(), src.tolist()):
        rng = np.random.default_rng(3 * 10**7 + i)
        codes = np.random.default_rng(4 * 10**7 + s).integers(0, 256, (10, 32), dtype=np.uint8)
        if s != i:
            edit = i % 3
            if edit == 1:
                codes[:8] = np.roll(codes[:8], 1 + i % 7, axis=0)
            elif edit == 2:
                codes[0] = codes[8]
            flips = rng.integers(0, 41)
            for c in range(10):
                bits = rng.choice(256, size=flips, replace=False)
                np.bitwise_xor.at(codes[c], bits // 8, (1 << (bits % 8)).astype(np.uint8))
        crop_quality = rng.integers(30, 101, 2).astype(np.uint8)
        rows.append(None if i % 97 == 5 else crop_quality.tobytes() + codes.tobytes())
        quality.append(None if i % 97 == 5 else (30 if i % 40 == 3 else 100))
        colours.append(None if i % 97 == 5 else pdq_colour(s, recoloured=s != i and i % 5 == 0, grey=i % 13 == 0))
    return pl.DataFrame({col.PDQ_CODES: pl.Series(rows, dtype=pl.Binary),
                         col.PDQ_QUALITY: pl.Series(quality, dtype=pl.Int32),
                         col.PDQ_COLOUR: pl.Series(colours, dtype=pl.Binary)})


def pdq_colour(source: int, recoloured: bool, grey: bool) -> bytes:
    """A ``pdq_colour`` signature: the source's two hues (its chroma mostly in one bin), turned half way round
    the hue circle for a recolour (refused by the colour gate), zero for a grey copy (compatible with all)."""
    signature = np.zeros(HUE_BINS, np.float16)
    if not grey:
        first = (source + (HUE_BINS // 2 if recoloured else 0)) % HUE_BINS
        signature[first], signature[(first + 1) % HUE_BINS] = 6.0, 2.0
    return signature.astype("<f2").tobytes()


def pdq_config(buckets: int, **search) -> DedupConfig:
    return DedupConfig.model_validate({"exact": {"enabled": True}, "pdq": {"enabled": True, "verify": UNVERIFIED},
                                       "partitions": {"buckets": buckets}, "search": {"use_gpu": False, **search}})


@pytest.fixture(scope="module")
def pdq_reference(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame]:
    layout = generated_run(tmp_path_factory.mktemp("pdq"), 1, pdq_columns)
    run_dedup(pdq_config(1), layout)
    return outputs(layout)


@pytest.mark.parametrize("parts", [1, 7])
def test_partitioned_pdq_equals_one_process_below_exact_max(tmp_path, pdq_reference, parts):
    layout = generated_run(tmp_path, parts, pdq_columns)
    run_partitioned(pdq_config(parts), layout)
    pairs, duplicates = outputs(layout)
    want_pairs, want_duplicates = pdq_reference
    assert want_pairs.filter(pl.col("detector") == "pdq").height > 30
    assert pairs.equals(want_pairs)
    assert duplicates.equals(want_duplicates)


def test_pdq_lists_probing_every_list_equal_the_exact_search(tmp_path, pdq_reference):
    """Beyond exact_max the lists run as tasks; probing every list is exhaustive, so pairs and survivors
    must be the exact search's, the colour gate's refusals (recoloured copies) included. Probing 2 of 16
    lists finds nearly all of them and nothing else."""
    ungated = generated_run(tmp_path / "ungated", 1, pdq_columns)
    ungated_pdq = PdqConfig(enabled=True, min_colour_overlap=0, verify=UNVERIFIED)
    run_dedup(pdq_config(1).model_copy(update={"pdq": ungated_pdq}), ungated)
    refused = outputs(ungated)[0].join(pdq_reference[0], on=["sample_a", "sample_b", "detector"], how="anti")
    assert refused.height > 5 and set(refused["detector"]) == {"pdq"}  # recoloured copies: the lists must refuse them
    layout = generated_run(tmp_path / "lists", 3, pdq_columns)
    run_partitioned(pdq_config(3, exact_max=100, nlist=8, nprobe=8), layout)
    assert outputs(layout)[0].equals(pdq_reference[0])
    assert outputs(layout)[1].equals(pdq_reference[1])
    run_partitioned(pdq_config(3, exact_max=100, nlist=16, nprobe=2), layout)
    exact = pdq_reference[0].filter(pl.col("detector") == "pdq")
    found = outputs(layout)[0].filter(pl.col("detector") == "pdq")
    both = found.join(exact, on=["sample_a", "sample_b"], suffix="_exact")
    assert both.height == found.height >= 0.9 * exact.height  # IVF recall; no pair outside the radius
    assert (both["similarity"] == both["similarity_exact"]).all()


@pytest.fixture(scope="module")
def pdq_scored(near_dup_set) -> dict[str, dict]:
    """sample_id -> pdq_codes, pdq_quality, orb_features of the generated near-duplicate photos."""
    from dedup.config import PdqConfig
    from dedup.pdq import PdqHasher

    ids = np.array([i.sample_id for i in near_dup_set], dtype=object)
    batch = PdqHasher(PdqConfig(enabled=True, verify={"enabled": True}))(
        {col.SAMPLE_ID: ids, col.IMAGE: np.array([i.data for i in near_dup_set], dtype=object)})
    return {c: dict(zip(ids, batch[c])) for c in (col.PDQ_CODES, col.PDQ_QUALITY, col.ORB_FEATURES)}


def verified_run(root, items, scored: dict[str, dict], config: DedupConfig, shards: int) -> RunLayout:
    """The generated near-duplicate photos (``near_dup_set``) as a run, with PDQ codes and ORB keypoints."""
    from tests.dedup.runs import write_run

    layout = write_run(root, items, config, shards, seed=1)
    for path in layout.score_files():
        frame = pl.read_parquet(path)
        added = {c: pl.Series(c, [scored[c][s] for s in frame[col.SAMPLE_ID]], dtype=t) for c, t in
                 ((col.PDQ_CODES, pl.Binary), (col.PDQ_QUALITY, pl.Int16), (col.ORB_FEATURES, pl.Binary))}
        frame.with_columns(**added).write_parquet(path)
    return layout


@pytest.mark.parametrize("verify_all", [False, True])
def test_partitioned_pdq_verification_equals_one_process(tmp_path, near_dup_set, pdq_scored, verify_all):
    """ORB + RANSAC over the candidates' keypoints joined per bucket, far hits capped at k = 2 per query
    code: the pdq and pdq_verified pairs (and survivors) of the lists probing every list equal the
    one-process exact search's."""
    def config(parts: int, **search) -> DedupConfig:
        return DedupConfig.model_validate({
            "exact": {"enabled": True}, "partitions": {"buckets": parts},
            "search": {"use_gpu": False, "k": 2, **search},
            "pdq": {"enabled": True, "verify": {"enabled": True, "verify_all": verify_all}}})

    layout = verified_run(tmp_path / "one", near_dup_set, pdq_scored, config(1), 1)
    run_dedup(config(1), layout)
    want = outputs(layout)
    assert want[0].filter(pl.col("detector") == "pdq_verified").height > 5
    layout = verified_run(tmp_path / "parts", near_dup_set, pdq_scored, config(1), 3)
    run_partitioned(config(3, exact_max=50, nlist=4, nprobe=4), layout)
    assert outputs(layout)[0].equals(want[0])
    assert outputs(layout)[1].equals(want[1])


@pytest.mark.parametrize("most", [30, 2])
def test_partitioned_keypoint_pairs_equal_one_process(tmp_path, near_dup_set, pdq_scored, most):
    """The keypoints detector as shuffles (keys by key, shared keys by a, ranked pairs by b, keypoints by
    sample_id) over 3 score files and 4 buckets finds the one-process detector's pairs, similarities and
    survivors, with a per-image cap that binds (2) or not."""
    def config(parts: int) -> DedupConfig:
        return DedupConfig.model_validate({
            "exact": {"enabled": False}, "partitions": {"buckets": parts}, "search": {"use_gpu": False},
            "pdq": {"enabled": True, "verify": {"enabled": True, "keypoints": {"enabled": True, "min_shared": 3,
                                                                              "max_candidates": most}}}})

    layout = verified_run(tmp_path / "one", near_dup_set, pdq_scored, config(1), 1)
    run_dedup(config(1), layout)
    want = outputs(layout)
    assert want[0].filter(pl.col("detector") == "keypoints").height > 20
    layout = verified_run(tmp_path / "parts", near_dup_set, pdq_scored, config(1), 3)
    run_partitioned(config(4), layout)
    assert outputs(layout)[0].equals(want[0])
    assert outputs(layout)[1].equals(want[1])


# --- map tasks read batches of score files ---------------------------------------------------------

def test_batched_map_tasks_find_the_same_semantic_and_pdq_pairs(tmp_path):
    """6 score files: one map task per file (a budget of 1 byte) vs batches of several files. The PDQ
    lists run as tasks probing 2 of 16 lists, so its pairs follow the trained quantizer: the training
    samples of both finders must not change with the batching, nor the pairs, distances and survivors."""
    files = 6
    layout = generated_run(tmp_path, files, lambda i: pl.concat([embeddings(i), pdq_columns(i)], how="horizontal"))

    def run(budget: int) -> tuple[Counter, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        config = DedupConfig.model_validate({
            "exact": {"enabled": True}, "keep": {"mode": "greedy"},
            "partitions": {"buckets": 3, "bytes_per_map_task": budget},
            "search": {"use_gpu": False, "exact_max": 100, "nlist": 16, "nprobe": 2, "train_sample": 3000},
            "pdq": {"enabled": True, "verify": UNVERIFIED},
            "semantic": {"enabled": True, "keep": "least_prototypical", "rows_per_cluster": 100,
                         "train_sample": 900}})
        calls: Counter = Counter()

        def tasks(fn, args):
            calls[fn.__name__] += len(args)
            return local_tasks(fn, args)

        run_partitioned(config, layout, tasks=tasks)
        distances = pl.read_parquet(sorted(centroid_dir(layout).glob("*.parquet"))).sort(col.SAMPLE_ID)
        return calls, *outputs(layout), distances

    one, *want = run(1)
    batched, *got = run(2_000_000)  # 400 rows a file: pdq assignment (codes, colour) ~0.9 MB a file, sampling ~0.3 MB
    assert {"semantic", "pdq"} <= set(want[0]["detector"])
    for table, expected in zip(got, want):
        assert table.equals(expected)
    mapped = ("sample_embeddings", "assign_clusters", "sample_codes", "assign_codes")
    assert [one[name] for name in mapped] == [files] * 4
    assert all(batched[name] < files for name in mapped), batched
    assert batched["assign_codes"] > 1  # several batches, not one task for the run
