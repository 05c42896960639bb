"""A shuffle's map side reads batches of input files: fewer map tasks and shuffle files (one a task), same result."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dedup.config import DedupConfig
from dedup.partitioned import run_partitioned
from dedup.shuffle import plan_batches
from tests.dedup.test_partitioned import DETECTORS, eligible, generated_run, outputs

FILES, BUCKETS = 12, 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 100), max_size=40), st.integers(1, 120))
def test_batches_cover_every_file_once_in_order_within_budget(sizes, budget):
    batches = plan_batches(sizes, budget)
    assert [i for batch in batches for i in batch] == list(range(len(sizes)))
    assert all(batches)
    for batch in batches:
        assert sum(sizes[i] for i in batch) <= budget or len(batch) == 1
    for before, after in zip(batches, batches[1:]):  # greedy: a batch closes only when the next file overflows it
        assert sum(sizes[i] for i in before) + sizes[after[0]] > budget


def test_batched_map_tasks_write_fewer_files_and_find_the_same_duplicates(tmp_path):
    """12 files of 250 rows: one map task per file (a budget of 1 byte) vs batches of 720 kB. The IVF
    lists run as tasks (exact_max below the run), so the pHash assignment is batched too."""
    layout = generated_run(tmp_path, FILES)

    def run(budget: int) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
        config = DedupConfig.model_validate({**DETECTORS, "search": {"exact_max": 100, "nlist": 8, "nprobe": 2},
                                             "partitions": {"buckets": BUCKETS, "bytes_per_map_task": budget}})
        stats = run_partitioned(config, layout, eligible())
        return (stats, *outputs(layout))

    one, pairs_one, duplicates_one = run(1)
    batched, pairs, duplicates = run(720_000)
    assert pairs_one.height > 200 and set(pairs_one["detector"]) == {"sha256", "pixel_hash", "minhash", "phash"}
    assert pairs.equals(pairs_one)
    assert duplicates.equals(duplicates_one)
    files_one, files = one["shuffle_files_written"], batched["shuffle_files_written"]
    assert files_one["keys-sha256"] == files_one["bands"] == FILES  # a shuffle file per map task, not per bucket too
    assert files["keys-sha256"] == 1  # 250 x 64 B a file: all 12 in one map task
    assert files["bands"] == 6  # 250 x (14 bands x 64 B + a 512 B signature): 2 files a task
    for name in ("signatures", "phash-lists", "keys", "pairs-by-a"):
        assert files[name] < files_one[name], name
    reduced = [n for n in files if n in ("candidates", "half", "phash-raw", "labels", "members", "group-pairs")
               or n.startswith("edges-") and n != "edges-0"]
    assert len(reduced) >= 9 and all(files[n] <= BUCKETS for n in reduced)  # one per reduce task, never buckets^2
    assert one["shuffled_files"]["bands"] == FILES  # what is left at the end counts the same files
