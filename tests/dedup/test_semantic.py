"""Semantic dedup (SemDeDup) on planted clusters of embeddings: recall, brute-force equality, pairs and keep."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup.artefacts import SampleIndex
from dedup.cluster import DETECTOR, SAMPLE_A, SAMPLE_B, cluster
from dedup.config import DedupConfig, SemanticConfig
from dedup.semantic import (CENTROID_DISTANCE, cluster_count, removed_by_eps, semantic_pairs, unit_vectors,
                            within_cluster_pairs)
from manifests import schema as col
from support.dedup_reference import kmeans_labels

DIM = 64


def planted(groups: int = 150, size: int = 3, noise_rows: int = 1500, seed: int = 0) -> tuple[np.ndarray, set]:
    """Unit vectors: ``groups`` tight groups (pairwise cosine ~0.99) followed by random rows; the planted pairs."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    members = np.repeat(centres, size, axis=0) + rng.standard_normal((groups * size, DIM)) * 0.1 / np.sqrt(DIM)
    rows = np.concatenate([members, rng.standard_normal((noise_rows, DIM))]).astype(np.float32)
    pairs = {(g * size + i, g * size + j) for g in range(groups) for i in range(size) for j in range(i + 1, size)}
    return unit_vectors(rows)[0], pairs


def brute_force(vectors: np.ndarray, labels: np.ndarray, threshold: float) -> set:
    sims = vectors @ vectors.T
    a, b = np.nonzero(np.triu(sims >= threshold, k=1) & (labels[:, None] == labels[None, :]))
    return set(zip(a.tolist(), b.tolist()))


@pytest.mark.parametrize("rows_per_cluster", [100, 400, 10_000])
def test_recall_of_planted_pairs_at_default_eps(rows_per_cluster):
    vectors, truth = planted()
    config = SemanticConfig(rows_per_cluster=rows_per_cluster)
    labels, _ = kmeans_labels(vectors, cluster_count(len(vectors), config), config)
    a, b, sim = within_cluster_pairs(vectors, labels, config.threshold, config.max_neighbours)
    found = set(zip(a.tolist(), b.tolist()))
    assert len(found & truth) / len(truth) >= 0.95
    assert found <= truth  # random rows are nowhere near cosine 0.97
    assert (sim >= config.threshold - 1e-6).all()


def test_pairs_equal_a_brute_force_search_within_clusters():
    vectors, _ = planted(noise_rows=600, seed=3)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, len(vectors))
    for threshold in (0.9, 0.97, 0.2):  # 0.2: many pairs, crossing block boundaries
        a, b, _ = within_cluster_pairs(vectors, labels, threshold, max_neighbours=10_000)
        assert set(zip(a.tolist(), b.tolist())) == brute_force(vectors, labels, threshold)


def test_max_neighbours_keeps_the_most_similar():
    vectors, _ = planted(groups=1, size=6, noise_rows=0)
    labels = np.zeros(len(vectors), dtype=np.int64)
    a, b, sim = within_cluster_pairs(vectors, labels, 0.5, max_neighbours=2)
    for row in np.unique(a):
        partners = sorted(((vectors[row] @ vectors[j]), j) for j in range(row + 1, 6))[-2:]
        assert set(b[a == row].tolist()) == {j for _, j in partners}


def _score_file(tmp_path, vectors: np.ndarray, parts: int = 1) -> tuple[list, SampleIndex]:
    """Score files holding ``vectors`` as float16 clip_embedding in ``parts`` files; the last row has none."""
    ids = [f"{i:05d}" for i in range(len(vectors))]
    tmp_path.mkdir(parents=True, exist_ok=True)
    emb = vectors.astype(np.float16)
    emb[-1] = 0  # CLIP could not score this row: an all-zero embedding
    paths = []
    for k, rows in enumerate(np.array_split(np.arange(len(ids)), parts)):
        column = pa.FixedSizeListArray.from_arrays(pa.array(emb[rows].ravel()), DIM)
        paths.append(tmp_path / f"{k:05d}.parquet")
        pq.write_table(pa.table({col.SAMPLE_ID: [ids[i] for i in rows], col.CLIP_EMBEDDING: column}), paths[-1])
    return paths, SampleIndex.of(pl.Series(ids))


def test_semantic_pairs_plug_into_the_pairs_table_and_clustering(tmp_path):
    vectors, truth = planted(groups=40, noise_rows=200)
    files, index = _score_file(tmp_path, vectors)
    config = DedupConfig(semantic=SemanticConfig(enabled=True, rows_per_cluster=100))
    pairs, distances = semantic_pairs(config.semantic, files, index, tmp_path / "work")
    assert set(pairs[DETECTOR]) == {"semantic"} and set(pairs[col.DUP_KIND]) == {"semantic"}
    assert distances.height == len(vectors) - 1 and distances[CENTROID_DISTANCE].min() >= -1e-5
    named = {(f"{a:05d}", f"{b:05d}") for a, b in truth}
    strict = pairs.filter(pl.col(col.SIMILARITY) >= config.semantic.threshold)
    assert len(set(zip(strict[SAMPLE_A], strict[SAMPLE_B])) & named) >= 0.95 * len(named)
    dups = cluster(pairs, config.thresholds())
    dropped = dups.filter(pl.col(col.DUPLICATE_OF).is_not_null())
    assert set(dropped[col.DUP_KIND]) == {"semantic"}
    assert 0.9 * 80 <= dropped.height <= 80  # two of each group of three go


@pytest.mark.parametrize("parts, bucket_rows", [(3, 200), (7, 50)])
def test_pairs_do_not_depend_on_files_or_buckets(tmp_path, parts, bucket_rows):
    vectors, _ = planted(groups=40, noise_rows=300, seed=5)
    config = SemanticConfig(enabled=True, rows_per_cluster=60, store_eps=0.4)
    one = semantic_pairs(config, *_score_file(tmp_path / "one", vectors), tmp_path / "w1")
    files, index = _score_file(tmp_path / "many", vectors, parts)
    many = semantic_pairs(config.model_copy(update={"bucket_rows": bucket_rows}), files, index, tmp_path / "w2")
    assert len(list((tmp_path / "w2").glob("bucket-*"))) > parts  # several buckets were spilled and searched
    assert one[0].sort(SAMPLE_A, SAMPLE_B).equals(many[0].sort(SAMPLE_A, SAMPLE_B))
    assert one[1].equals(many[1])


def test_larger_eps_reclusters_from_stored_pairs(tmp_path):
    vectors, _ = planted(groups=20, noise_rows=100)
    files, index = _score_file(tmp_path, vectors)
    pairs, _ = semantic_pairs(SemanticConfig(enabled=True, eps=0.03, store_eps=0.5), files, index, tmp_path / "w")
    tight = cluster(pairs, DedupConfig(semantic=SemanticConfig(eps=0.001)).thresholds())
    loose = cluster(pairs, DedupConfig(semantic=SemanticConfig(eps=0.03)).thresholds())
    assert pairs[col.SIMILARITY].min() >= 0.5 - 1e-6
    assert tight.filter(pl.col(col.DUPLICATE_OF).is_not_null()).height < \
        loose.filter(pl.col(col.DUPLICATE_OF).is_not_null()).height


def test_least_prototypical_keeps_the_row_farthest_from_its_centroid(tmp_path):
    vectors, _ = planted(groups=1, size=4, noise_rows=0)
    files, index = _score_file(tmp_path, np.concatenate([vectors, vectors[:1]]))
    pairs, distances = semantic_pairs(SemanticConfig(enabled=True), files, index, tmp_path / "w")
    dups = cluster(pairs, DedupConfig().thresholds(), distances, (CENTROID_DISTANCE,), "component")
    farthest = distances.sort(CENTROID_DISTANCE, descending=True)[col.SAMPLE_ID][0]
    assert set(dups[col.KEPT_SAMPLE_ID]) == {farthest}


def test_removed_share_grows_with_eps_and_is_plotted(tmp_path):
    from pipelines.config import build_config, dump_config
    from pipelines.tools.commands import run_plots

    vectors, _ = planted(groups=30, noise_rows=60)
    files, index = _score_file(tmp_path, vectors)
    pairs, _ = semantic_pairs(SemanticConfig(enabled=True, store_eps=0.95), files, index, tmp_path / "w")
    counts = [n for _, n in removed_by_eps(pairs, [0.0, 0.03, 0.3, 0.95])]
    assert counts == sorted(counts) and counts[1] == 60 and counts[-1] > counts[1]
    run = tmp_path / "run"
    (run / "dedup").mkdir(parents=True)
    pairs.write_parquet(run / "dedup" / "pairs.parquet")
    n = len(index)
    pl.DataFrame({col.SAMPLE_ID: index.ids, col.STATUS: ["success"] * n, col.KEEP: [True] * n,
                  col.REJECT_REASONS: [[] for _ in range(n)]}).write_parquet(run / "manifest.parquet")
    config = build_config({"output_dir": str(run), "input": {"kind": "url_list", "path": "x.parquet"},
                           "filters": {"clip": {"enabled": True}},
                           "dedup": {"semantic": {"enabled": True, "store_eps": 0.95}}})
    (run / "config.yaml").write_text(dump_config(config))
    written = run_plots(run, [], tmp_path / "plots")
    assert tmp_path / "plots" / "semantic_eps.png" in written


def test_semantic_dedup_needs_clip():
    from pipelines.config import ConfigError, build_config

    with pytest.raises(ConfigError, match="filters.clip.enabled"):
        build_config({"output_dir": "/tmp/x", "input": {"kind": "url_list", "path": "x.parquet"},
                      "dedup": {"semantic": {"enabled": True}}})


def test_reads_the_tensor_column_the_score_phase_writes(tmp_path):
    """Ray Data writes a 2-D numpy column as its tensor extension type; the detector reads it as written."""
    from ray.data.extensions import ArrowTensorArray

    vectors, truth = planted(groups=5, noise_rows=20)
    ids = [f"{i:05d}" for i in range(len(vectors))]
    column = ArrowTensorArray.from_numpy(vectors.astype(np.float16))
    pq.write_table(pa.table({col.SAMPLE_ID: ids, col.CLIP_EMBEDDING: column}), tmp_path / "00000.parquet")
    pairs, distances = semantic_pairs(SemanticConfig(enabled=True), [tmp_path / "00000.parquet"],
                                      SampleIndex.of(pl.Series(ids)), tmp_path / "w")
    assert {(f"{a:05d}", f"{b:05d}") for a, b in truth} == set(zip(pairs[SAMPLE_A], pairs[SAMPLE_B]))
    assert distances.height == len(ids)


@pytest.mark.parametrize("keep", ["policy", "least_prototypical"])
def test_dedup_phase_writes_semantic_pairs_and_keeps_by_policy(tmp_path, keep):
    from support.dedup_reference import run_dedup
    from dedup.survivors import centroid_path
    from manifests.io import write_parquet
    from manifests.layout import RunLayout

    vectors, _ = planted(groups=10, size=3, noise_rows=30, seed=7)
    layout = RunLayout.at(tmp_path / "run")
    ids = [f"{i:05d}" for i in range(len(vectors))]
    resolution = np.arange(len(ids)) % 3 + 1  # the policy's tie-break: the largest image of a group
    write_parquet(pa.table({col.SAMPLE_ID: ids, col.STATUS: ["success"] * len(ids), col.SHA256: ids,
                            col.ORIGINAL_WIDTH: pa.array(100 * resolution, pa.int32()),
                            col.ORIGINAL_HEIGHT: pa.array([100] * len(ids), pa.int32())}), layout.staged_rows(0))
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float16).ravel()), DIM)
    write_parquet(pa.table({col.SAMPLE_ID: ids, col.CLIP_EMBEDDING: column}), layout.scores_dir / "000.parquet")
    config = DedupConfig(exact={"enabled": False}, semantic=SemanticConfig(enabled=True, keep=keep))  # semantic alone
    stats = run_dedup(config, layout)
    assert stats["detectors"] == ["semantic"] and stats["by_kind"] == {"semantic": 20}
    dups = pl.read_parquet(layout.duplicates)
    kept = set(dups.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID])
    if keep == "policy":
        assert kept == {f"{3 * g + 2:05d}" for g in range(10)}
    else:
        far = pl.read_parquet(centroid_path(layout)).filter(pl.col(col.SAMPLE_ID).is_in(dups[col.SAMPLE_ID].to_list()))
        groups = far.with_columns((pl.col(col.SAMPLE_ID).cast(pl.Int64) // 3).alias("g"))
        want = groups.sort(CENTROID_DISTANCE, descending=True).group_by("g").first()[col.SAMPLE_ID]
        assert kept == set(want)
