"""One partitioned dedup run's plan: its work directory, bucket sizing, batches of input files and the
executor that runs a list of independent tasks (a Ray map in ``pipelines.run.tasks``, ``local_tasks`` here).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from dedup import shuffle
from dedup.config import DedupConfig
from manifests.io import parquet_rows
from manifests.layout import RunLayout

Tasks = Callable[..., list[Any]]  # (fn, args, num_gpus=0.0) -> results in the order of args


def local_tasks(fn: Callable[..., Any], args: list[tuple], num_gpus: float = 0.0) -> list[Any]:
    """Run each task in this process, in order: the reference executor (tests, tiny runs, the tools)."""
    return [fn(*a) for a in args]


class Plan:
    """One dedup run's work directory, bucket sizing and executor."""

    def __init__(self, config: DedupConfig, layout: RunLayout, tasks: Tasks, work: Path | None = None) -> None:
        self.config, self.layout, self.tasks = config, layout, tasks
        self.work = work or layout.dedup_work
        self.footer_rows: dict[Path, int] = {}  # input file -> rows, read once from its footer
        self.rows = sum(self.file_rows(f) for f in layout.staged_row_files())
        self.cc_buckets = 1  # set by components() from the pair count
        self.shuffles: list[Path] = []  # every directory fresh() handed out
        self.written: dict[str, int] = {}  # shuffle directory name -> part files its step wrote

    def buckets(self, rows: int, row_bytes: int) -> int:
        p = self.config.partitions
        return shuffle.bucket_count(rows, row_bytes, p.bytes_per_bucket, p.buckets)

    def file_rows(self, path: Path) -> int:
        if path not in self.footer_rows:
            self.footer_rows[path] = parquet_rows([path])
        return self.footer_rows[path]

    def batches(self, files: list[Path], row_bytes: int) -> list[list[Path]]:
        """``files`` cut into consecutive batches of about ``bytes_per_map_task`` (footer rows x
        ``row_bytes``, what a map task holds per input row): one map task each, so a shuffle writes
        batches x buckets files, not files x buckets."""
        sizes = [self.file_rows(f) * row_bytes for f in files]
        budget = self.config.partitions.bytes_per_map_task
        return [[files[i] for i in batch] for batch in shuffle.plan_batches(sizes, budget)]

    def fresh(self, name: str) -> Path:
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        self.shuffles.append(path)
        return path

    def each(self, fn: Callable[..., Any], args: list[tuple], gpus: float = 0.0) -> list[Any]:
        """``fn(*a)`` for every ``a`` by the executor; ``gpus``: GPUs each task holds (Ray places it on a GPU node)."""
        if not args:
            out: list[Any] = []
        else:
            out = self.tasks(fn, args, num_gpus=gpus) if gpus else self.tasks(fn, args)
        self._count_written()
        return out

    def _count_written(self) -> None:
        """Data files in each shuffle directory after a step, before a later step deletes it (the
        component rounds do): what the run wrote, a file system's or object store's cost."""
        for path in self.shuffles:
            if path.exists():
                self.written[path.name] = max(self.written.get(path.name, 0), len(shuffle.data_files(path)))
