"""The notes tune prints: why an override changes nothing or less than asked.

The survivors under the new rules are re-picked on the run side (``pipelines.run.repick``).
"""

from __future__ import annotations

from pathlib import Path

from dedup.config import DETECTORS, SECTION_DETECTORS
from filters.config import FiltersConfig, threshold_rules
from manifests import schema as col
from manifests.io import read_json
from manifests.layout import RunLayout
from pipelines.config import RunConfig

# Sections tune reads: a score section by the column its stage writes, and the dedup detectors.
LANGUAGE_COLUMN = col.CAPTION_LANG  # filters.language writes it; filters.rules.languages reads it
DECISION_SECTIONS = ("filters", "dedup")


def override_notes(overrides: list[str], config: RunConfig, ran: RunConfig, columns: set[str],
                   pairs: RunLayout) -> list[str]:
    """Why an override changes nothing or less than asked, each with the command that would make it act: its
    stage never ran (no score column), its detector never ran, its threshold is below the pairs the run stored,
    or it is no part of the decision (``ran``: the run's config; ``pairs``: the run that holds the stored pairs)."""
    has_pairs, found_by = bool(pairs.pairs_files()), detectors_run(pairs, ran)
    notes = []
    if not has_pairs and found_by:
        notes.append(f"no {pairs.pairs} (nor {pairs.pairs_dir}): duplicates are re-applied as the manifest holds them, survivors not re-picked")
    for override in overrides:
        keys = override.partition("=")[0].strip().split(".")
        if keys[0] not in DECISION_SECTIONS:
            notes += _outside_note(override, keys, pairs.root)
        elif len(keys) == 3 and keys[0] == "filters":
            notes += _filter_note(override, config.filters, keys[1], columns, pairs.root)
        elif len(keys) == 3 and keys[0] == "dedup" and keys[1] in DEDUP_SECTIONS:
            notes += _dedup_note(override, keys[1], keys[2], config, ran, found_by, pairs.root)
    return notes


def rerun(run: Path, sets: list[str], redo: str) -> str:
    """The command that runs ``redo`` and the phases after it under ``sets``, then tune again."""
    return f"thresher run {run} {' '.join(f'--set {s}' for s in sets)} --redo {redo}, then tune again"


def _switches_off(override: str) -> bool:
    return override.replace(" ", "").lower().endswith(".enabled=false")


def _outside_note(override: str, keys: list[str], run: Path) -> list[str]:
    note = f"--set {override}: {keys[0]} is no part of the decision, so tune ignores it"
    if keys[0] == "caption" and keys[-1] == "enabled":
        note += f"; to caption the kept rows: {rerun(run, [override], 'caption')}"
    return [note]


def _filter_note(override: str, filters: FiltersConfig, name: str, columns: set[str], run: Path) -> list[str]:
    rules = [r for r in threshold_rules(filters, enabled_only=False) if r.section == name]
    needed = [r.column for r in rules] or ([LANGUAGE_COLUMN] if name == "language" else [])
    section = getattr(filters, name, None)
    if not needed or section is None or _switches_off(override):
        return []
    missing = [c for c in needed if c not in columns]
    if missing:
        sets = list(dict.fromkeys([f"filters.{name}.enabled=true", override]))
        return [f"--set {override}: the manifest has no {missing[0]} column, so the {name} stage never ran on this "
                f"run and this changes nothing; score it first: {rerun(run, sets, 'score')}"]
    if not section.enabled:
        return [f"--set {override}: filters.{name} is not enabled in this config, so its threshold is not "
                f"applied; add --set filters.{name}.enabled=true"]
    return []


# A dedup section -> its detectors (dedup.config.DETECTORS); one whose descriptor a score stage writes needs the
# score phase again, the others (sha256 from ingest, semantic from CLIP's embedding) only the dedup phase.
DEDUP_SECTIONS = SECTION_DETECTORS


def detectors_run(pairs: RunLayout, ran: RunConfig) -> set[str]:
    """The detectors whose pairs the run stored: as its last dedup phase recorded them in run.json. Not the
    run's config.yaml, which the last command wrote: ``thresher score RUN --set dedup.X.enabled=true`` enables
    X there before any dedup phase ran it."""
    recorded = read_json(pairs.run_json).get("phases", {}).get("dedup", {}) if pairs.run_json.exists() else {}
    return set(recorded["detectors"]) if "detectors" in recorded else set(ran.dedup.enabled_detectors())


def _dedup_note(override: str, name: str, field: str, config: RunConfig, ran: RunConfig, found_by: set[str],
                run: Path) -> list[str]:
    if _switches_off(override):
        return []
    section = getattr(config.dedup, name)
    switched_on = config.dedup.model_copy(update={name: section.model_copy(update={"enabled": True})})
    would = [d for d in DETECTORS if d.name in DEDUP_SECTIONS[name] and d.enabled(switched_on)]
    new = [d for d in would if d.name not in found_by]
    if new:  # a detector that ran but left no pairs file has the note of override_notes
        sets = list(dict.fromkeys([f"dedup.{name}.enabled=true", override]))
        redo = "score" if any(d.stage for d in new) else "dedup"
        return [f"--set {override}: the {name} detector never ran on this run (no stored {name} pairs), so this "
                f"changes nothing; run it first: {rerun(run, sets, redo)}"]
    if not section.enabled:
        return [f"--set {override}: dedup.{name} is not enabled in this config, so it is not applied; add "
                f"--set dedup.{name}.enabled=true"]
    before = getattr(ran.dedup, name)
    if field == "threshold" and hasattr(before, "stored_from"):
        threshold = getattr(config.dedup, name).threshold
        if threshold < before.stored_from - 1e-9:
            return [f"--set {override}: the run stored {name} pairs from {before.stored_from:g} up only "
                    f"(dedup.{name}.store_threshold), so pairs between {threshold:g} and {before.stored_from:g} "
                    f"are not found; to find them: "
                    f"{rerun(run, [f'dedup.{name}.store_threshold={threshold:g}', override], 'dedup')}"]
    return []
