"""Corrupt intermediate files are found before a command reads them, removed, and redone; never read.

Every file is written under a temporary name and renamed, so a crash leaves none half-written; but a disk,
a copy or a person can still truncate one afterwards. Before any phase runs, the run's intermediates are
checked cheaply: each Parquet file by its magic bytes and footer length (a truncated or zero-byte part
fails both), each staged tar by the size ingest recorded in its unit's Parquet (``TAR_BYTES``). A corrupt
file is deleted with the done marker of the phase that wrote it, so that phase redoes that unit: a staged
unit is crawled again (its score file goes too), a score unit is scored again, a dedup, decide, caption or
export part makes its phase run again. Each repair is one warning line naming the file and what is redone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.layout import RunLayout

log = logging.getLogger(__name__)

TAR_BYTES = b"thresher.staged_tar_bytes"  # staged Parquet metadata: the size of the tar written with it
MAGIC = b"PAR1"

# The Parquet files each phase writes (the phase whose marker goes when one of them is corrupt).
WRITTEN_BY: dict[str, Callable[[RunLayout], list[Path]]] = {
    "score": lambda layout: layout.score_files(),
    "dedup": lambda layout: layout.pairs_files() + layout.duplicates_files(),
    "decide": lambda layout: layout.decided_files() + sorted(layout.decided_duplicates_dir.rglob("*.parquet")),
    "caption": lambda layout: sorted(layout.captions_dir.rglob("*.parquet")),
    "export": lambda layout: layout.manifest_files() + sorted(layout.shards_dir.glob("*.parquet")),
}


def with_tar_size(table: pa.Table, tar: Path) -> pa.Table:
    """``table`` (a staged unit's rows) recording the size of the tar staged with it."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), TAR_BYTES: str(tar.stat().st_size).encode()})


def parquet_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole Parquet file (zero bytes, no magic at either end, a footer longer than
    the file), or None. Reads 8 bytes at each end, never the data."""
    size = path.stat().st_size
    if size < 12:
        return f"{size} bytes, too short for Parquet"
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(-8, 2)
        tail = f.read(8)
    footer = int.from_bytes(tail[:4], "little")
    if head != MAGIC or tail[4:] != MAGIC:
        return "no Parquet magic at its start or end (truncated or overwritten)"
    if footer > size - 12:
        return f"its footer claims {footer} bytes of a {size}-byte file"
    return None


def staged_problem(rows: Path) -> str | None:
    """Why the staged unit of ``rows`` (its Parquet and the tar beside it) cannot be read as written."""
    problem = parquet_problem(rows)
    if problem:
        return f"{rows.name}: {problem}"
    try:
        recorded = (pq.read_schema(rows).metadata or {}).get(TAR_BYTES)
    except (OSError, pa.ArrowException) as exc:
        return f"{rows.name}: unreadable footer ({exc})"
    tar = rows.with_suffix(".tar")
    if recorded is None:  # staged before sizes were recorded: only a missing tar shows
        return None if tar.exists() else f"{tar.name} is missing"
    size = tar.stat().st_size if tar.exists() else None
    if size != int(recorded):
        return f"{tar.name} is {'missing' if size is None else f'{size} bytes'}; ingest wrote {int(recorded)}"
    return None


def repair(layout: RunLayout) -> list[str]:
    """Delete every corrupt intermediate with its phase's done marker; returns one line per repair."""
    lines: list[str] = []
    if layout.staged_dir.exists():
        for rows in layout.staged_row_files():
            problem = staged_problem(rows)
            if problem is None:
                continue
            for path in (rows, rows.with_suffix(".tar"), layout.scores_dir / rows.name):
                path.unlink(missing_ok=True)
            layout.done_marker("ingest").unlink(missing_ok=True)
            lines.append(f"{layout.relative(rows.with_suffix('.tar'))}: {problem}; unit {rows.stem} is staged again")
    for phase, files in WRITTEN_BY.items():
        for path in files(layout):
            problem = parquet_problem(path)
            if problem is None:
                continue
            path.unlink()
            layout.done_marker(phase).unlink(missing_ok=True)
            lines.append(f"{layout.relative(path)}: {problem}; the {phase} phase redoes it")
    for line in lines:
        log.warning("corrupt file: %s", line)
    return lines
