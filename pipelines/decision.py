"""Survivors re-picked in one process from a one-process dedup's pairs file, and the notes tune prints.

A new threshold changes which rows pass the other rules, so the survivors of the duplicate
clusters are picked again from the run's stored pairs (``dedup.survivors``) before deciding;
``pipelines.repick`` decides where (here, or by tasks over partitioned pairs).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl

from dedup import survivors
from filters.config import FiltersConfig, threshold_rules
from filters.decide import passes_rules
from manifests import reexport
from manifests.layout import RunLayout
from pipelines.config import RunConfig

def pairs_layout(run: Path) -> RunLayout:
    """The layout of the run that holds ``run``'s stored pairs (a re-export's source run)."""
    return RunLayout.at(reexport.images_root(run))


def current_duplicates(frame: pl.LazyFrame, pairs: RunLayout, config: RunConfig) -> pl.DataFrame | None:
    """The duplicates table of ``pairs``' stored pairs under ``config`` (memory ~ the paired rows); None
    when the run stored no pairs."""
    stored = survivors.stored_pairs(pairs.pairs_files(), config.dedup)
    if stored is None:
        return None
    ranked = survivors.with_centroid_distance(frame, pairs.pairs.with_name(survivors.CENTROIDS_FILE), config.dedup)
    return survivors.duplicates(ranked, stored, config.dedup, partial(passes_rules, config=config.filters))


def override_notes(overrides: list[str], config: RunConfig, ran: RunConfig, columns: set[str],
                   pairs: RunLayout) -> list[str]:
    """Why an override changes nothing or less than asked: its stage never ran (no score column), its
    detector stored no pairs, or its threshold is below the pairs the run stored (``ran``: the run's config)."""
    has_pairs = bool(pairs.pairs_files())
    notes = []
    if not has_pairs and set(ran.dedup.thresholds()) - survivors.switched_off(ran.dedup):  # a detector ran
        notes.append(f"no {pairs.pairs} (nor {pairs.pairs_dir}): duplicates are re-applied as the manifest holds them, survivors not re-picked")
    for override in overrides:
        keys = override.partition("=")[0].strip().split(".")
        if len(keys) == 3 and keys[0] == "filters":
            notes += _filter_note(override, config.filters, keys[1], columns)
        elif len(keys) == 3 and keys[0] == "dedup" and hasattr(getattr(ran.dedup, keys[1], None), "stored_from"):
            notes += _dedup_note(override, keys[1], keys[2], config, ran, has_pairs)
    return notes


def _filter_note(override: str, filters: FiltersConfig, name: str, columns: set[str]) -> list[str]:
    rule = next((r for r in threshold_rules(filters, enabled_only=False) if r.section == name), None)
    if rule is None:
        return []
    if not getattr(filters, name).enabled:
        return [f"--set {override}: filters.{name} is not enabled in this config, so its threshold is not "
                f"applied; add --set filters.{name}.enabled=true"]
    if rule.column in columns:
        return []
    return [f"--set {override}: the manifest has no {rule.column} column, so the {name} stage never ran on "
            f"this run and this threshold changes nothing; score it first (thresher run with "
            f"filters.{name}.enabled=true)"]


def _dedup_note(override: str, name: str, field: str, config: RunConfig, ran: RunConfig, has_pairs: bool) -> list[str]:
    before = getattr(ran.dedup, name)
    if not has_pairs or not before.enabled:
        return [f"--set {override}: the {name} detector stored no pairs on this run, so this changes nothing; "
                f"run it first (thresher run with dedup.{name}.enabled=true --redo dedup)"]
    threshold = getattr(config.dedup, name).threshold
    if field == "threshold" and threshold < before.stored_from - 1e-9:
        return [f"--set {override}: the run stored {name} pairs from {before.stored_from:g} up only "
                f"(dedup.{name}.store_threshold), so pairs between {threshold:g} and {before.stored_from:g} "
                f"are not found; to find them rerun with dedup.{name}.store_threshold={threshold:g} --redo dedup"]
    return []
