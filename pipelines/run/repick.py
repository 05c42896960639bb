"""Which duplicates rows a decision uses: as the dedup phase picked them, or re-picked from the stored pairs.

A duplicate cluster's survivor is picked among the rows that pass every other rule, so a decision
under new rules (the decide phase of a rerun, tune, plots/audit with ``--set``, re-export) needs the
survivors picked again -- unless its rules are the ones the survivors were picked under (a digest of
the filters and dedup settings, ``rules_digest``). ``survivors`` is that one choice for every caller:
the decide phase (``decide_tasks.current_survivors``, rows per ingest unit) and a finished run's manifest
(``for_manifest``: tune, plots, audit, review, re-export; rows per manifest part). Re-picking never holds
the run: eligibility is one task per unit or part (``eligible``), then the partitioned components and
groups (``dedup.partitioned``); the single pairs file of a run made before the one engine is re-picked
in one process (memory ~ the paired rows). The result is a ``Duplicates``: where each part's duplicates rows are.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import polars as pl

from dedup import survivors as one_process
from dedup.cluster import DUPLICATES_SCHEMA
from dedup.plan import Tasks
from dedup.survivors import DUP_COLUMNS, ELIGIBLE
from filters.config import FiltersConfig
from filters.decide import passes_rules
from manifests import reexport
from manifests import schema as col
from manifests.io import write_parquet
from manifests.layout import RunLayout
from pipelines.config import RunConfig, load_config
from pipelines.run.phase_inputs import marker, rules_digest

EXPORT_COLUMNS = (col.EXPORT_SHARD, col.EXPORT_MEMBER)


@dataclass(frozen=True)
class Duplicates:
    """Where each unit's duplicates rows are: ``parts/UNIT/*.parquet``, or one ``table`` for all units."""
    parts: Path | None = None
    table: Path | None = None

    def files(self, unit: str) -> list[Path]:
        if self.parts is not None:
            return sorted((self.parts / unit).glob("*.parquet"))
        return [self.table] if self.table is not None and self.table.exists() else []

    def every_file(self) -> list[Path]:
        if self.parts is not None:
            return sorted(self.parts.rglob("*.parquet"))
        return self.files("")


def join_duplicates(frame: pl.LazyFrame, files: list[Path] | None) -> pl.LazyFrame:
    """``frame`` left-joined with duplicates rows (``DUPLICATES_SCHEMA``) under the manifest's names;
    ``[]`` adds the columns, all null (every part gets the same columns); None leaves ``frame`` as it is."""
    if files is None:
        return frame
    dups = pl.scan_parquet([str(p) for p in files]) if files else pl.LazyFrame(schema=DUPLICATES_SCHEMA)
    return one_process.join_duplicates(frame, dups)


def decided_rules(run: Path) -> str:
    """The rules digest ``run``'s manifest was decided under: its decide phase's record, else (a re-export, an
    older run) its config's. Not simply config.yaml's: ``thresher score RUN --set ...`` records a config
    that no decision has applied yet."""
    found = marker(RunLayout.at(run), "decide") or {}
    return found.get("inputs", {}).get("config") or rules_digest(load_config(run))


def pairs_layout(run: Path) -> RunLayout:
    """The layout of the run that holds ``run``'s stored pairs (a re-export's source run)."""
    return RunLayout.at(reexport.images_root(run))


@dataclass(frozen=True)
class Work:
    """Where a re-pick writes: the duplicates part files (``duplicates/UNIT/``), the one-process table,
    the eligibility files (one per unit or part) and the shuffle buckets (both removed after the re-pick)."""
    duplicates: Path
    table: Path
    eligible: Path
    shuffle: Path

    @classmethod
    def under(cls, root: Path) -> Work:
        return cls(root / "duplicates", root / "duplicates.parquet", root / "eligible", root / "shuffle")

    @classmethod
    def of_decide(cls, layout: RunLayout) -> Work:
        return cls(layout.decided_duplicates_dir, layout.decided_duplicates, layout.decide_eligible_dir,
                   layout.decide_shuffle_dir)


def eligible(rows: Callable[[], pl.LazyFrame], unit: str, filters: FiltersConfig, out: str) -> int:
    """Task: which of one unit's (or manifest part's) ``rows()`` pass every rule but dedup -> OUT/UNIT.parquet."""
    frame = passes_rules(rows(), filters).select(col.SAMPLE_ID, pl.col(col.KEEP).alias(ELIGIBLE)).collect()
    write_parquet(frame.to_arrow(), Path(out) / f"{unit}.parquet")
    return frame.height


def current_duplicates(frame: pl.LazyFrame, pairs: RunLayout, config: RunConfig) -> pl.DataFrame | None:
    """The duplicates table of ``pairs``' stored pairs under ``config``, in one process (memory ~ the
    paired rows); None when the run stored no pairs."""
    stored = one_process.stored_pairs(pairs.pairs_files(), config.dedup)
    if stored is None:
        return None
    ranked = one_process.with_centroid_distance(frame, one_process.centroid_path(pairs), config.dedup)
    return one_process.duplicates(ranked, stored, config.dedup, partial(passes_rules, config=config.filters))


SAME_RULES = "as the dedup phase picked them (same rules)"


def survivors(config: RunConfig, pairs: RunLayout, picked_under: str | None,
              rows: list[tuple[str, Callable[[], pl.LazyFrame]]], frame: Callable[[], pl.LazyFrame], work: Work,
              tasks: Tasks) -> tuple[Duplicates | None, str]:
    """The duplicates rows under ``config``'s rules, and how they were had; None: the stored ones stand
    (no stored pairs, or ``picked_under``, the digest they were picked under, is ``config``'s). ``rows``:
    (unit, its rows) for the eligibility tasks; ``frame``: every row, for the one-process re-pick."""
    shutil.rmtree(work.duplicates, ignore_errors=True)
    work.table.unlink(missing_ok=True)
    if not pairs.pairs_files():
        return None, "no stored pairs"
    if picked_under == rules_digest(config):
        return None, SAME_RULES
    if pairs.pairs.exists():  # a run made before the one engine (its one-process dedup wrote one pairs file)
        write_parquet(current_duplicates(frame(), pairs, config).to_arrow(), work.table)
        return Duplicates(table=work.table), "re-picked in one process"
    from dedup.partitioned import Survivors, recluster_partitioned  # the finders' imports: not for tune's start

    try:
        tasks(eligible, [(read, unit, config.filters, str(work.eligible)) for unit, read in rows])
        into = Survivors(work.duplicates, work.shuffle, sorted(work.eligible.glob("*.parquet")))
        recluster_partitioned(config.dedup, pairs, tasks, into=into)
    finally:
        shutil.rmtree(work.eligible, ignore_errors=True)
        shutil.rmtree(work.shuffle, ignore_errors=True)
    return Duplicates(parts=work.duplicates), "re-picked by tasks"


# --- a finished run's manifest (tools, re-export) ---------------------------------------------------

def bare(part: Path, duplicates: bool = True) -> pl.LazyFrame:
    """A manifest part without its export location and (``duplicates``) its duplicate columns."""
    frame = pl.scan_parquet(part)
    names = frame.collect_schema().names()
    return frame.drop([c for c in (*(DUP_COLUMNS if duplicates else ()), *EXPORT_COLUMNS) if c in names])


def for_manifest(run: Path, parts: list[Path], config: RunConfig, work: Path, tasks: Tasks) -> tuple[Duplicates | None, str]:
    """The duplicates rows of ``run``'s manifest under ``config``; None: the manifest's own columns stand."""
    rows = [(RunLayout.unit_of(p), partial(bare, p)) for p in parts]
    return survivors(config, pairs_layout(run), decided_rules(run), rows,
                     lambda: pl.scan_parquet([str(p) for p in parts]), Work.under(work), tasks)


def part_duplicates(found: Duplicates | None, part: Path, parts: list[Path]) -> list[Path] | None:
    """The duplicates files of one manifest part (a one-file manifest: all of them)."""
    if found is None:
        return None
    if len(parts) == 1 and not part.name.startswith("part-"):  # manifest.parquet: not split by unit
        return found.every_file()
    return found.files(RunLayout.unit_of(part))


@contextmanager
def current_manifest(run: Path, config: RunConfig, tasks: Tasks) -> Iterator[pl.LazyFrame]:
    """``run``'s manifest, lazily over its parts, with its duplicate columns as ``config``'s rules pick
    them; valid inside the block (the re-picked rows live in a temporary directory)."""
    parts = reexport.manifest_files(RunLayout.at(run))
    with tempfile.TemporaryDirectory(prefix="thresher-survivors-") as work:
        found, _ = for_manifest(run, parts, config, Path(work), tasks)
        yield joined(found, parts)


def part_frames(found: Duplicates | None, parts: list[Path]) -> list[pl.LazyFrame]:
    """Each manifest part with its duplicate columns as ``found`` holds them (None: as the part holds them)."""
    if found is None:
        return [pl.scan_parquet(p) for p in parts]
    return [join_duplicates(bare(p), part_duplicates(found, p, parts)) for p in parts]


def joined(found: Duplicates | None, parts: list[Path]) -> pl.LazyFrame:
    """The whole manifest, lazily, with its duplicate columns as ``found`` holds them."""
    if found is None:
        return pl.scan_parquet([str(p) for p in parts])
    return pl.concat(part_frames(found, parts))
