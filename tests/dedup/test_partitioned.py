"""The partitioned dedup (shuffles, list joins, components, survivors per group) equals the one-process
reference on generated runs, whatever the number of input files and buckets."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from dedup.config import DedupConfig
from dedup.partitioned import run_partitioned
from dedup.run import ELIGIBLE, run_dedup
from dedup.scalegen import write_part
from manifests import schema as col
from manifests.layout import RunLayout

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
    assert want_pairs.height > 200 and set(want_pairs["detector"]) == {"sha256", "pixels", "minhash", "phash"}
    assert pairs.equals(want_pairs)
    assert duplicates.equals(want_duplicates)
    assert stats["duplicates"] == want_duplicates[col.DUPLICATE_OF].is_not_null().sum()
