"""Score-phase work units: one score file per staged tar, committed once it holds every sample of the tar.

The model stages stream over all pending tars in one Ray Data execution (actors load their model
once); the driver gathers the output rows of each tar and writes ``score/scores/{tar}.parquet``
atomically when the last one arrives. A rerun after a crash keeps every unit file whose sample ids
match the tar's successful rows and whose stage digest matches the current stages, and scores only
the rest. A unit restaged by ``ingest --retry-failed`` no longer matches, so it is scored again.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as col
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import Status

PATH = "path"  # the column read_webdataset(include_paths=True) adds: the tar a sample came from
DIGEST_KEY = b"thresher.stages"


def stages_digest(specs: list) -> str:
    """Changes whenever a stage, its model or a setting that changes its output changes; thresholds and
    resources are left out (they never change a score)."""
    described = json.dumps([s.describe() for s in specs], sort_keys=True, default=str)
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def accepted_digests(specs: list) -> set[str]:
    """The digest score files are stamped with now, and the one runs made before thresholds were left out
    stamped them with under the same config (so such a run is not re-scored for the change)."""
    whole = json.dumps([s.describe_whole() for s in specs], sort_keys=True, default=str)
    return {stages_digest(specs), hashlib.sha256(whole.encode()).hexdigest()[:16]}


def unit_name(tar: str) -> str:
    return Path(tar).name.removesuffix(".tar")


def expected_units(layout: RunLayout) -> dict[str, set[str]]:
    """Staged tar name -> sample ids staged in it (the successful ingest rows)."""
    files = layout.staged_row_files()
    if not files:
        return {}
    rows = (pl.scan_parquet([str(f) for f in files]).filter(pl.col(col.STATUS) == Status.SUCCESS)
            .select(col.SAMPLE_ID, col.SHARD).collect())
    units: dict[str, set[str]] = defaultdict(set)
    for sample_id, shard in rows.iter_rows():
        units[unit_name(shard)].add(sample_id)
    return dict(units)


def unit_file(layout: RunLayout, name: str) -> Path:
    return layout.scores_dir / f"{name}.parquet"


def stamp(path: Path) -> str:
    """The digest of the stages a score file was made by, from its footer ("" when it has none)."""
    return (pq.read_schema(path).metadata or {}).get(DIGEST_KEY, b"").decode()


def is_scored(path: Path, ids: set[str], digests: set[str]) -> bool:
    if not path.exists() or stamp(path) not in digests:
        return False
    return set(pq.read_table(path, columns=[col.SAMPLE_ID]).column(0).to_pylist()) == ids


def misstamped(layout: RunLayout, digests: set[str]) -> list[str]:
    """Units whose score file is stamped with a digest not in ``digests`` (made by other stages, or altered):
    from the files' footers only, so a finished phase can be checked on every command."""
    return [p.stem for p in layout.score_files() if stamp(p) not in digests]


def pending_units(layout: RunLayout, digests: set[str]) -> dict[str, set[str]]:
    """Units still to score (no file, other samples, or a digest not in ``digests``); deletes score files of
    units that no longer exist."""
    expected = expected_units(layout)
    for path in layout.score_files():
        if path.stem not in expected:
            path.unlink()
    return {name: ids for name, ids in expected.items() if not is_scored(unit_file(layout, name), ids, digests)}


class UnitCollector:
    """Gathers output batches (with the PATH column) per unit; writes each unit when complete."""

    def __init__(self, layout: RunLayout, pending: dict[str, set[str]], digest: str) -> None:
        self.layout, self.pending, self.digest = layout, pending, digest
        self.parts: dict[str, list[pa.Table]] = defaultdict(list)
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.committed: set[str] = set()

    def add(self, batch: pa.Table) -> None:
        if PATH not in batch.column_names:
            raise RuntimeError(f"a score stage dropped the {PATH!r} column; stages must return the batch they got "
                               "with their columns added")
        for tar in pc.unique(batch.column(PATH)).to_pylist():
            name = unit_name(tar)
            part = batch.filter(pc.equal(batch.column(PATH), tar)).drop_columns([PATH])
            # A tar may hold a sample its Parquet does not call a success (a retry interrupted between
            # the two writes): the Parquet decides, as it does for the manifest.
            part = part.filter(pc.is_in(part.column(col.SAMPLE_ID), pa.array(sorted(self.pending[name]))))
            # A retried task's output replaces nothing: count each sample id once.
            self.seen[name].update(part.column(col.SAMPLE_ID).to_pylist())
            self.parts[name].append(part)
            if self.seen[name] >= self.pending[name]:
                self._commit(name)

    def _commit(self, name: str) -> None:
        table = pa.concat_tables(self.parts.pop(name))
        ids = table.column(col.SAMPLE_ID).to_pylist()
        if len(ids) != len(set(ids)) or set(ids) != self.pending[name]:
            raise RuntimeError(f"score unit {name}: got {len(ids)} rows for {len(self.pending[name])} samples")
        meta = {**(table.schema.metadata or {}), DIGEST_KEY: self.digest.encode()}
        write_parquet(table.replace_schema_metadata(meta), unit_file(self.layout, name))
        self.committed.add(name)

    def finish(self) -> int:
        missing = sorted(set(self.pending) - self.committed)
        if missing:
            raise RuntimeError(f"score: units {missing[:5]} did not get all their samples back from the stages")
        return len(self.committed)
