"""The partitioned dedup (shuffles, list joins, components, survivors per group) equals the one-process
reference on generated runs, whatever the number of input files and buckets."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dedup.config import DedupConfig
from dedup.partitioned import run_partitioned
from support.dedup_reference import ELIGIBLE, run_dedup
from dedup.shuffle import scan_parts
from manifests import schema as col
from manifests.layout import RunLayout
from support.scalegen import write_part

ROWS = 3000
DETECTORS = {"exact": {"enabled": True}, "minhash": {"enabled": True}, "phash": {"enabled": True}}


def generated_run(root, parts: int) -> RunLayout:
    layout = RunLayout.at(root)
    bounds = np.linspace(0, ROWS, parts + 1).astype(int)
    for part, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:])):
        write_part(layout, part, int(start), int(stop))
    return layout


def eligible() -> pl.DataFrame:
    ids = pl.Series(col.SAMPLE_ID, [f"{i:011d}" for i in range(ROWS)])
    return pl.DataFrame({col.SAMPLE_ID: ids, ELIGIBLE: np.random.default_rng(1).random(ROWS) < 0.8})


def outputs(layout: RunLayout) -> tuple[pl.DataFrame, pl.DataFrame]:
    pairs = pl.read_parquet(layout.pairs_files()).sort("sample_a", "sample_b", "detector")
    duplicates = pl.read_parquet(layout.duplicates_files()).sort(col.SAMPLE_ID)
    return pairs, duplicates


def config(parts: int, mode: str = "greedy", **search) -> DedupConfig:
    return DedupConfig.model_validate({**DETECTORS, "keep": {"mode": mode}, "search": search,
                                       "partitions": {"buckets": parts}})


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, tuple[pl.DataFrame, pl.DataFrame]]:
    out = {}
    for mode in ("greedy", "component"):
        layout = generated_run(tmp_path_factory.mktemp(f"reference-{mode}"), 1)
        run_dedup(config(1, mode), layout, eligible())
        out[mode] = outputs(layout)
    return out


@pytest.mark.parametrize("parts,mode", [(1, "greedy"), (3, "greedy"), (7, "greedy"), (3, "component")])
def test_partitioned_equals_one_process(tmp_path, reference, parts, mode):
    layout = generated_run(tmp_path, parts)
    stats = run_partitioned(config(parts, mode), layout, eligible())
    pairs, duplicates = outputs(layout)
    want_pairs, want_duplicates = reference[mode]
    assert want_pairs.height > 200 and set(want_pairs["detector"]) == {"sha256", "pixel_hash", "minhash", "phash"}
    assert pairs.equals(want_pairs)
    assert duplicates.equals(want_duplicates)
    assert stats["duplicates"] == want_duplicates[col.DUPLICATE_OF].is_not_null().sum()


def test_buckets_sized_by_bytes_equal_one_process(tmp_path, reference):
    """No fixed bucket count: each shuffle sizes its own (3000 rows but ~100 clustered pairs at 20 kB a
    bucket), and the keep policy still sees every clustered sample's scores."""
    layout = generated_run(tmp_path, 3)
    sized = DedupConfig.model_validate({**DETECTORS, "partitions": {"bytes_per_bucket": 20_000}})
    run_partitioned(sized, layout, eligible())
    pairs, duplicates = outputs(layout)
    want_pairs, want_duplicates = reference["greedy"]
    assert pairs.equals(want_pairs)
    assert duplicates.equals(want_duplicates)


def test_components_over_the_cap_equal_one_process(tmp_path, reference):
    """With max_component_rows 3 the generated run's larger components (4-5 samples) go to the giant
    rounds (dedup/giant.py) beside the groups: the same duplicates table and counts."""
    layout = generated_run(tmp_path, 3)
    capped = DedupConfig.model_validate({**DETECTORS, "partitions": {"buckets": 3, "max_component_rows": 3}})
    stats = run_partitioned(capped, layout, eligible())
    _, duplicates = outputs(layout)
    want = reference["greedy"][1]
    assert stats["giant_components"] > 1
    assert duplicates.equals(want)
    dropped = want.filter(pl.col(col.DUPLICATE_OF).is_not_null())
    assert (stats["duplicates"], stats["clusters"]) == (dropped.height, dropped["kept_sample_id"].n_unique())


@pytest.mark.parametrize("buckets", [1, 4])
def test_components_equal_union_find_on_chains_and_stars(tmp_path, buckets):
    from dedup import components as cc
    from dedup.cluster import union_find
    from dedup.partitioned import components
    from dedup.plan import Plan

    rng = np.random.default_rng(7)
    n = 600
    chain = [(i, i + 1) for i in range(0, 199)]  # one long path: many rounds
    star = [(300, j) for j in range(301, 340)]
    rand = [tuple(sorted(rng.choice(np.arange(400, n), 2, replace=False))) for _ in range(150)]
    edges = np.array(chain + star + rand)
    ids = [f"{i:05d}" for i in range(n)]
    layout = RunLayout.at(tmp_path)
    pairs = pl.DataFrame({"sample_a": [ids[a] for a, _ in edges], "sample_b": [ids[b] for _, b in edges],
                          "detector": "sha256", "dup_kind": "exact", "similarity": 1.0},
                         schema={"sample_a": pl.String, "sample_b": pl.String, "detector": pl.String,
                                 "dup_kind": pl.String, "similarity": pl.Float32})
    layout.pairs_dir.mkdir(parents=True)
    pairs.write_parquet(layout.pairs_dir / "sha256-00000.parquet")
    plan = Plan(DedupConfig.model_validate({"partitions": {"buckets": buckets}}), layout, lambda f, a: [f(*x) for x in a])
    labels_dir, count, rounds = components(plan, [layout.pairs_dir / "sha256-00000.parquet"])
    assert 1 < rounds < 40  # the 200-node path takes several rounds, far fewer than its length
    labels = scan_parts(labels_dir, {}).collect().sort(col.SAMPLE_ID)  # a shuffle: read through its index
    roots = union_find(n, edges[:, 0], edges[:, 1])
    linked = np.unique(edges)
    assert count == len(linked)
    assert labels[col.SAMPLE_ID].to_list() == [ids[i] for i in linked]
    assert labels[col.CLUSTER_ID].to_list() == [ids[roots[i]] for i in linked]
    assert cc.converged([(1, 2)], [(1, 2)]) and not cc.converged(None, [(1, 2)])


@pytest.mark.parametrize("detectors", [{"phash": {"enabled": True}},
                                       {"sscd": {"enabled": True, "random_init": True, "dims": 16,
                                                 "threshold": 0.9}}])
def test_list_join_probing_every_list_equals_exact_search(tmp_path, detectors):
    """Beyond exact_max the lists run as tasks; probing every list is exhaustive, so the pairs must be
    the exact search's (the one-process path below exact_max)."""
    layout = generated_run(tmp_path, 3)
    if "sscd" in detectors:
        _add_embeddings(layout)
    exact = DedupConfig.model_validate({**detectors, "partitions": {"buckets": 2}})
    run_dedup(exact, layout)
    want = pl.read_parquet(layout.pairs).sort("sample_a", "sample_b")
    lists = DedupConfig.model_validate({**detectors, "partitions": {"buckets": 2},
                                        "search": {"exact_max": 100, "nlist": 8, "nprobe": 8, "k": 64}})
    run_partitioned(lists, layout)
    got = pl.read_parquet(layout.pairs_files()).sort("sample_a", "sample_b")
    assert want.height > 50
    assert got.select("sample_a", "sample_b").equals(want.select("sample_a", "sample_b"))
    assert np.allclose(got["similarity"].to_numpy(), want["similarity"].to_numpy(), atol=1e-5)


def _add_embeddings(layout: RunLayout) -> None:
    """16-d unit vectors: planted copies of the pHash sources get their source's vector plus noise."""
    from support.scalegen import sources

    for path in layout.score_files():
        frame = pl.read_parquet(path)
        index = frame[col.SAMPLE_ID].cast(pl.Int64).to_numpy()
        src = sources(index, "phash")
        vectors = np.stack([np.random.default_rng(int(s)).normal(size=16) for s in src])
        vectors += np.stack([np.random.default_rng(10**6 + int(i)).normal(scale=0.15, size=16) for i in index]) \
            * (src != index)[:, None]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        blobs = [v.astype("<f4").tobytes() for v in vectors]
        frame.with_columns(pl.Series(col.SSCD_EMBEDDING, blobs, dtype=pl.Binary)).write_parquet(path)


@pytest.mark.parametrize("cap", [None, 3])
def test_partitioned_on_ray_equals_one_process(tmp_path, reference, ray_session, cap):
    """cap 3: the larger components go through the giant rounds' tasks on Ray too."""
    from pipelines.run.tasks import run

    layout = generated_run(tmp_path, 3)
    capped = {"max_component_rows": cap} if cap else {}
    run(DedupConfig.model_validate({**DETECTORS, "partitions": {"buckets": 3, **capped}}), layout, eligible())
    assert outputs(layout)[0].equals(reference["greedy"][0])
    assert outputs(layout)[1].equals(reference["greedy"][1])
    assert not (layout.root / "dedup" / "work").exists()


def test_partitions_disabled_runs_the_same_plan_in_the_driver(tmp_path):
    """dedup.partitions.enabled false: the phase runs the partitioned plan's tasks in this process, one bucket
    per shuffle, and writes the same part files (pairs, duplicates) as the run with several buckets."""
    from pipelines.run.tasks import run

    several = generated_run(tmp_path / "several", 3)
    run_partitioned(config(3), several, eligible())
    driver = generated_run(tmp_path / "driver", 3)
    found = run(DedupConfig.model_validate({**DETECTORS, "partitions": {"enabled": False}}), driver, eligible())
    assert not driver.pairs.exists() and not driver.duplicates.exists()  # part files only, as on a cluster
    assert {p.name[-14:] for p in driver.pairs_dir.glob("*.parquet")} == {"-00000.parquet"}  # one bucket
    pairs, duplicates = outputs(driver)
    want_pairs, want_duplicates = outputs(several)
    assert want_pairs.height > 200 and pairs.equals(want_pairs)
    assert duplicates.equals(want_duplicates)
    assert found["duplicates"] == want_duplicates[col.DUPLICATE_OF].is_not_null().sum()
    assert not (driver.root / "dedup" / "work").exists()


def test_recluster_partitioned_with_stricter_thresholds(tmp_path):
    """Re-clustering the stored part files with other thresholds equals the one-process recluster."""
    from dedup.partitioned import recluster_partitioned
    from support.dedup_reference import recluster

    layout = generated_run(tmp_path, 3)
    run_dedup(config(3), layout)
    stricter = DedupConfig.model_validate({**DETECTORS, "minhash": {"enabled": True, "threshold": 0.95},
                                           "phash": {"enabled": True, "threshold": 0.97},
                                           "partitions": {"buckets": 2}})
    recluster(stricter, layout)
    want = pl.read_parquet(layout.duplicates).sort(col.SAMPLE_ID)
    pairs = pl.read_parquet(layout.pairs)
    layout.pairs.unlink()
    layout.duplicates.unlink()
    layout.pairs_dir.mkdir(parents=True)
    pairs.write_parquet(layout.pairs_dir / "all-00000.parquet")
    recluster_partitioned(stricter, layout)
    got = pl.read_parquet(layout.duplicates_files()).sort(col.SAMPLE_ID)
    assert 0 < got.height < pl.read_parquet(layout.pairs_dir).height * 2
    assert got.equals(want)
    assert not (layout.root / "dedup" / "work").exists()


def test_a_missing_score_column_fails_before_any_work(tmp_path):
    layout = generated_run(tmp_path, 1)
    for path in layout.score_files():
        pl.read_parquet(path).drop(col.PIXEL_HASH).write_parquet(path)
    with pytest.raises(RuntimeError, match="pixel_hash"):
        run_partitioned(config(1), layout)
    assert not layout.pairs_files() and not (layout.root / "dedup" / "work").exists()


def test_a_run_where_nothing_was_scored_dedups_to_nothing(tmp_path):
    """Every download failed: the score phase wrote no file, so there is nothing to pair (not an error)."""
    layout = generated_run(tmp_path, 2)
    for f in layout.score_files():
        f.unlink()
    for f in layout.staged_row_files():
        pl.read_parquet(f).with_columns(pl.lit("failed_to_download").alias(col.STATUS)).write_parquet(f)
    found = run_partitioned(DedupConfig.model_validate({**DETECTORS, "partitions": {"buckets": 2}}), layout)
    assert sum(p["pairs"] for p in found["pairs"].values()) == 0
    assert pl.read_parquet(layout.duplicates_files()).height == 0
