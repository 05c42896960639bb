"""The IVF list join on a torch device (``dedup.gpujoin``) finds what the numpy join finds: on torch's CPU
here, on CUDA where there is a GPU; the partitioned SSCD search asks its executor for GPUs when told to."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from dedup import gpujoin, ivfjoin
from dedup.config import DedupConfig
from dedup.partitioned import run_partitioned
from dedup.plan import local_tasks
from support.dedup_reference import run_dedup
from pipelines.config import ConfigError, RunConfig
from pipelines.run.cluster import check_pools, dedup_pools
from tests.dedup.test_partitioned import _add_embeddings, generated_run

SSCD = {"sscd": {"enabled": True, "random_init": True, "dims": 16, "threshold": 0.9}}


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors with planted near-copies (some rows copied many times: crowded rows for the k cut)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 32)).astype(np.float32)
    src = rng.integers(0, n // 10, size=n)
    copy = rng.random(n) < 0.5
    v[copy] = v[src[copy]] + rng.normal(scale=0.05, size=(copy.sum(), 32))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _pairs(a: np.ndarray, b: np.ndarray, s: np.ndarray) -> dict[tuple[int, int], float]:
    return {(int(x), int(y)): float(z) for x, y, z in zip(a, b, s)}


def _same(device: torch.device) -> None:
    v = _vectors(900)
    members, probers = np.arange(600), np.arange(600, 900)
    want = _pairs(*ivfjoin._ListJoin(v, 0.9, 4)((members, probers)))
    got = _pairs(*gpujoin.list_join(v, members, probers, 0.9, 4, device))
    assert len(want) > 500
    assert got.keys() == want.keys()
    assert np.allclose([got[p] for p in want], list(want.values()), atol=1e-4)


def test_block_hits_on_a_device_equals_numpy() -> None:
    sims = np.random.default_rng(3).random((64, 80)).astype(np.float32)
    sims[5] = 0.95 + np.linspace(0, 0.04, 80)  # a crowded row: its k best, distinct values
    i, j = gpujoin.block_hits(torch.from_numpy(sims), 0.9, 6)
    want_i, want_j = ivfjoin.block_hits(sims, 0.9, 6)
    assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(want_i.tolist(), want_j.tolist()))


def test_list_join_on_torch_cpu_equals_the_numpy_join() -> None:
    _same(torch.device("cpu"))


@pytest.mark.gpu
def test_list_join_on_cuda_equals_the_numpy_join() -> None:
    _same(gpujoin.device_for("cuda"))


def test_partitioned_sscd_asks_for_gpus_and_finds_the_exact_pairs(tmp_path, monkeypatch) -> None:
    """join_gpus > 0: the list-join tasks are submitted with num_gpus and join on a torch device (CPU
    here, standing in for the task's GPU); probing every list equals the exact search."""
    layout = generated_run(tmp_path, 3)
    _add_embeddings(layout)
    run_dedup(DedupConfig.model_validate({**SSCD, "partitions": {"buckets": 2}}), layout)
    want = pl.read_parquet(layout.pairs).sort("sample_a", "sample_b")
    asked: list[float] = []

    def executor(fn, args, num_gpus: float = 0.0):
        asked.append(num_gpus)
        return local_tasks(fn, args)

    monkeypatch.setattr(gpujoin, "device_for", lambda name: torch.device("cpu"))
    lists = DedupConfig.model_validate({**SSCD, "partitions": {"buckets": 2, "join_gpus": 0.5},
                                        "search": {"exact_max": 100, "nlist": 8, "nprobe": 8, "k": 64}})
    run_partitioned(lists, layout, tasks=executor)
    got = pl.read_parquet(layout.pairs_files()).sort("sample_a", "sample_b")
    assert asked.count(0.5) == 1 and set(asked) == {0.0, 0.5}  # the list joins only
    assert want.height > 50 and got.select("sample_a", "sample_b").equals(want.select("sample_a", "sample_b"))


def test_join_gpus_on_a_cpu_cluster_fails_before_the_phase() -> None:
    config = RunConfig.model_validate({"input": {"path": "x.parquet"}, "output_dir": "out",
                                       "dedup": {**SSCD, "partitions": {"join_gpus": 1}}})
    with pytest.raises(ConfigError, match="dedup.partitions.join_gpus"):
        check_pools("dedup", dedup_pools(config), [{"CPU": 8.0}])
    assert dedup_pools(RunConfig.model_validate({"input": {"path": "x.parquet"}, "output_dir": "out"})) == []
