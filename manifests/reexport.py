"""Re-export a finished run under a new name: new decision -> new shards + manifest, no model.

The source run is only read. The new export is a directory of its own, by default a sibling of
the run named ``<RUN>-<NAME>``::

    RUN-NAME/
      config.yaml        the source run's config with the overrides applied
      export.json        source run, overrides, counts
      manifest/          every row of the source manifest with the new keep / reject_reasons and export
                         location, one part per part of the source (``manifest.parquet`` too with
                         export.manifest_file)
      shards/NNNNN.tar   training shards of the newly kept rows, from the source run's staged images
                         (with NNNNN.parquet, NNNNN_stats.json and sizes.json, as a run's export)

Its ``staged_shard`` / ``staged_member`` columns still name the source run's staged images (``export.json``
records where that is), so query, tune, plots and audit work on an export as on a run. It is
written under a temporary name and renamed whole, so a crash leaves no half export. The decision and
the writing are ``pipelines.tools.reexport``'s, part by part.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from manifests.io import read_json
from manifests.layout import RunLayout

RECORD = "export.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def export_dir(run_root: Path, name: str) -> Path:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (no '/', no leading dot)")
    return run_root.parent / f"{run_root.name}-{name}"


def images_root(root: Path) -> Path:
    """The run directory that holds the staged images the manifest at ``root`` refers to."""
    source = read_json(root / RECORD).get("source_run")
    return Path(source) if source else root


def manifest_files(layout: RunLayout) -> list[Path]:
    """The final manifest's files (``manifest/`` parts or ``manifest.parquet``), or the decided rows of a run
    that stopped before captioning/export."""
    files = layout.manifest_files() or layout.decided_files()
    if not files:
        raise FileNotFoundError(f"{layout.root} has no manifest/ (nor manifest.parquet, nor decide/parts/): "
                                "is it a run directory whose decide phase finished?")
    return files


def scan_manifest(layout: RunLayout) -> pl.LazyFrame:
    """The manifest as one lazy dataset over its files."""
    return pl.scan_parquet([str(f) for f in manifest_files(layout)])


def check_target(source_root: Path, target: Path) -> None:
    """An export never writes into its source run and never overwrites an earlier export."""
    if target.resolve().is_relative_to(source_root.resolve()):
        raise ValueError(f"{target} is inside the source run {source_root}, which an export never writes into")
    if target.exists():
        raise FileExistsError(f"{target} exists already; pick another --name (exports are never overwritten)")


def read_manifest(run: Path) -> pl.DataFrame:
    """The whole manifest of the run at ``run`` in memory (small runs, tests, notebooks)."""
    return scan_manifest(RunLayout.at(run)).collect()
