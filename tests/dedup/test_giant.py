"""Giant components (over dedup.partitions.max_component_rows) are decided in rounds of bounded tasks
(dedup/giant.py) with exactly the survivors and rows of the one-process ``cluster()``."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from dedup import giant
from dedup.cluster import cluster
from dedup.config import DedupConfig
from dedup.partitioned import recluster_partitioned
from dedup.plan import local_tasks
from support.dedup_reference import ELIGIBLE, check_keep_invariant
from dedup.survivors import eligible_path, keep_order
from manifests import schema as col
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import Status
from tests.dedup.test_keep_invariant import LAYOUTS, as_pairs, graphs, pairs_of


def config(cap: int, buckets: int | None = 2) -> DedupConfig:
    return DedupConfig.model_validate({"minhash": {"enabled": True}, "phash": {"enabled": True},
                                       "sscd": {"enabled": True, "random_init": True},
                                       "partitions": {"buckets": buckets, "max_component_rows": cap}})


def write_inputs(root: Path, pairs: pl.DataFrame, scores: pl.DataFrame) -> RunLayout:
    """A run with only what re-clustering reads: staged rows (two units), scores, eligibility, pair parts."""
    layout = RunLayout.at(root)
    height = (pl.int_range(pl.len()) % 3 + 8).alias(col.ORIGINAL_HEIGHT)
    rows = scores.select(col.SAMPLE_ID, pl.lit(Status.SUCCESS).alias(col.STATUS), pl.lit(8).alias(col.ORIGINAL_WIDTH), height)
    for unit, part in enumerate((rows[::2], rows[1::2])):
        write_parquet(part.to_arrow(), layout.staged_dir / f"{unit:05d}.parquet")
    write_parquet(scores.select(col.SAMPLE_ID, col.AESTHETIC_SCORE).to_arrow(), layout.scores_dir / "00000.parquet")
    write_parquet(scores.select(col.SAMPLE_ID, ELIGIBLE).to_arrow(), eligible_path(layout))
    half = pairs.height // 2  # two pair parts, as two finder tasks write them
    for i, part in enumerate((pairs[:half], pairs[half:])):
        write_parquet(part.to_arrow(), layout.pairs_dir / f"pairs-{i:05d}.parquet")
    return layout


def reference(pairs: pl.DataFrame, scores: pl.DataFrame, cfg: DedupConfig) -> pl.DataFrame:
    """``cluster()`` in one process on the same pairs and keep-policy columns."""
    ranked = scores.with_columns(resolution=8 * (pl.int_range(pl.len()) % 3 + 8).cast(pl.Int64))
    return cluster(pairs, cfg.thresholds(), ranked, keep_order(cfg), "greedy")


def partitioned(layout: RunLayout, cfg: DedupConfig, tasks=local_tasks) -> tuple[pl.DataFrame, dict]:
    stats = recluster_partitioned(cfg, layout, tasks)
    return pl.read_parquet(layout.duplicates_files()).sort(col.SAMPLE_ID), stats


def chain_and_star() -> tuple[pl.DataFrame, pl.DataFrame]:
    """A chain of 60 distinct pictures, a star of 50 byte-identical copies hung off its middle, and a
    caption class of 5 joined to the star by a caption link: one component of 115 samples."""
    chain = [f"c{i:03d}" for i in range(60)]
    star = [f"s{i:03d}" for i in range(50)]
    same_caption = [f"t{i:03d}" for i in range(5)]
    rows = [(a, b, "phash", 0.9) for a, b in zip(chain, chain[1:])]
    rows += [(star[0], s, "sha256", 1.0) for s in star[1:]] + [(chain[30], star[7], "sscd", 0.8)]
    rows += [(same_caption[0], t, "minhash", 1.0) for t in same_caption[1:]]
    rows += [(star[3], same_caption[2], "minhash", 0.85)]
    ids = chain + star + same_caption
    rng = random.Random(3)
    scores = pl.DataFrame({col.SAMPLE_ID: ids, ELIGIBLE: [rng.random() < 0.8 for _ in ids],
                           col.AESTHETIC_SCORE: [rng.choice([None, 1.0, 2.0, 3.0, 4.0, 5.0]) for _ in ids]},
                          strict=False)
    return as_pairs(rows), scores


def test_a_component_over_the_cap_is_decided_in_bounded_tasks_with_the_same_survivors(tmp_path):
    pairs, scores = chain_and_star()
    cap = 20
    received: dict[str, list] = {}

    def recording(fn, args, num_gpus=0.0):
        out = local_tasks(fn, args)
        received.setdefault(fn.__name__, []).extend(out)
        return out

    capped, stats = partitioned(write_inputs(tmp_path / "capped", pairs, scores), config(cap), recording)
    # What the tasks received: the 115-sample component never reached a group task; the giant tasks each
    # held a bucket of its samples and of its hub links, none over the cap, and there were several.
    assert stats["giant_components"] == 1 and stats["giant_rounds"] >= 1
    assert all(part["rows"] == 0 for part in received["keep_group"])
    members, links = received["nodes"], received["best_links"]
    assert sum(members) == 115 and sum(1 for n in members if n) > 1 and max(members) <= cap
    assert sum(links) > 0 and max(links) <= cap
    uncapped, plain = partitioned(write_inputs(tmp_path / "uncapped", pairs, scores), config(1000))
    assert plain["giant_components"] == 0
    assert capped.equals(uncapped)
    assert capped.equals(reference(pairs, scores, config(cap)))
    assert {k: stats[k] for k in ("clusters", "duplicates", "kept_in_clusters", "by_kind")} == \
        {k: plain[k] for k in ("clusters", "duplicates", "kept_in_clusters", "by_kind")}
    kept = capped.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID]
    assert check_keep_invariant(pairs, config(cap).thresholds(), kept) == []
    # The chain is cut into survivor groups: not one cluster of 115.
    assert stats["clusters"] > 10


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graphs(), st.sampled_from(LAYOUTS), st.integers(2, 4), st.integers(1, 3))
def test_giant_rounds_equal_cluster_on_random_graphs(tmp_path_factory, graph, layout, cap, buckets):
    """Stars, chains and cliques of exact groups and identical captions, random image and caption
    links, ties and nulls in the keep order: the rounds give cluster()'s table, row for row."""
    ids, keys, approx, scores, rng = graph
    pairs = pairs_of(keys, approx, layout, rng)
    cfg = config(cap, buckets)
    expected = reference(pairs, scores, cfg)
    if expected.is_empty():
        return
    out, stats = partitioned(write_inputs(tmp_path_factory.mktemp("run"), pairs, scores), cfg)
    assert out.equals(expected)
    kept = out.filter(pl.col(col.DUPLICATE_OF).is_null())[col.SAMPLE_ID]
    assert check_keep_invariant(pairs, cfg.thresholds(), kept, keys) == []
    assert stats["clusters"] == expected.filter(pl.col(col.DUPLICATE_OF).is_not_null())["kept_sample_id"].n_unique()


def test_the_cap_is_validated_and_sizes_the_giant_buckets():
    with pytest.raises(ValidationError, match="max_component_rows"):
        DedupConfig.model_validate({"partitions": {"max_component_rows": 1}})
    assert giant.bucket_count(100, 20, 1) == 20 and giant.bucket_count(100, 1000, 3) == 3
