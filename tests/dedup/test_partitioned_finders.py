"""The partitioned semantic and PDQ finders equal their one-process references on generated runs,
whatever the number of score files and buckets: same pairs, same centroid distances, same survivors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from dedup.config import DedupConfig
from dedup.partitioned import run_partitioned
from dedup.run import centroid_dir, centroid_path, run_dedup
from dedup.scalegen import sources, write_part
from manifests import schema as col
from manifests.layout import RunLayout

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
