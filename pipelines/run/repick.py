"""Which duplicates rows a decision uses: as the run picked them, or re-picked from the stored pairs.

A duplicate cluster's survivor is picked among the rows that pass every other rule, so a decision
under new rules (the decide phase of a rerun, tune, plots/audit with ``--set``, re-export) needs the
survivors picked again -- unless its rules are the ones the survivors were picked under (a digest of
the filters and dedup settings, ``rules_digest``). Re-picking never holds the run: partitioned pairs
go through eligibility per part and the partitioned components and groups (``dedup.partitioned``);
the one-process dedup's single pairs file is re-picked in one process (memory ~ the paired rows).
The result is a ``Duplicates``: where each part's duplicates rows are.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import polars as pl

from dedup.cluster import DETECTOR, DUPLICATES_SCHEMA
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
from pipelines.tools import decision

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
    detector = [pl.col(DETECTOR).alias(col.DUP_DETECTOR)] if DETECTOR in dups.collect_schema().names() else []
    return frame.join(dups.select(col.SAMPLE_ID, col.CLUSTER_ID, col.DUPLICATE_OF, col.DUP_KIND,
                                  pl.col(col.SIMILARITY).alias(col.DUP_SIMILARITY), *detector),
                      on=col.SAMPLE_ID, how="left", maintain_order="left")


def decided_rules(run: Path) -> str:
    """The rules digest ``run``'s manifest was decided under: its decide phase's record, else (a re-export, an
    older run) its config's. Not simply config.yaml's: ``thresher score RUN --set ...`` records a config
    that no decision has applied yet."""
    found = marker(RunLayout.at(run), "decide") or {}
    return found.get("inputs", {}).get("config") or rules_digest(load_config(run))


def by_tasks(config: RunConfig, pairs: RunLayout, eligibility: list[tuple], eligible_fn: Callable[..., int],
             work: Path, tasks: Tasks) -> Duplicates:
    """Survivors re-picked from ``pairs``' partitioned pairs: ``eligible_fn(*args)`` per part writes
    work/eligible/UNIT.parquet, then components and groups write work/duplicates/UNIT/."""
    from dedup.partitioned import Survivors, recluster_partitioned  # the finders' imports: not for tune's start

    tasks(eligible_fn, eligibility)
    into = Survivors(work / "duplicates", work / "shuffle", sorted((work / "eligible").glob("*.parquet")))
    recluster_partitioned(config.dedup, pairs, tasks, into=into)
    return Duplicates(parts=work / "duplicates")


def in_one_process(frame: pl.LazyFrame, config: RunConfig, pairs: RunLayout, out: Path) -> Duplicates:
    """Survivors re-picked from the one-process dedup's pairs file (memory ~ the paired rows)."""
    write_parquet(decision.current_duplicates(frame, pairs, config).to_arrow(), out)
    return Duplicates(table=out)


# --- a finished run's manifest (tools, re-export) ---------------------------------------------------

def bare(part: Path, duplicates: bool = True) -> pl.LazyFrame:
    """A manifest part without its export location and (``duplicates``) its duplicate columns."""
    frame = pl.scan_parquet(part)
    names = frame.collect_schema().names()
    return frame.drop([c for c in (*(DUP_COLUMNS if duplicates else ()), *EXPORT_COLUMNS) if c in names])


def eligible_part(part: str, filters: FiltersConfig, out: str) -> int:
    """Task: which rows of one manifest part pass every rule but dedup -> OUT/UNIT.parquet."""
    frame = passes_rules(bare(Path(part)), filters).select(col.SAMPLE_ID, pl.col(col.KEEP).alias(ELIGIBLE)).collect()
    write_parquet(frame.to_arrow(), Path(out) / f"{RunLayout.unit_of(Path(part))}.parquet")
    return frame.height


def for_manifest(run: Path, parts: list[Path], config: RunConfig, work: Path, tasks: Tasks) -> tuple[Duplicates | None, str]:
    """The duplicates rows of ``run``'s manifest under ``config``; None: the manifest's own columns stand."""
    pairs = decision.pairs_layout(run)
    if not pairs.pairs_files():
        return None, "no stored pairs"
    if rules_digest(config) == decided_rules(run):
        return None, "as the run picked them (same rules)"
    if pairs.pairs.exists():
        return in_one_process(pl.scan_parquet([str(p) for p in parts]), config, pairs, work / "duplicates.parquet"), \
            "re-picked in one process"
    args = [(str(p), config.filters, str(work / "eligible")) for p in parts]
    return by_tasks(config, pairs, args, eligible_part, work, tasks), "re-picked by tasks"


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
