"""What each phase's output depends on, so that a rerun does only the phases whose inputs changed.

A phase's ``_DONE`` marker records ``inputs`` (the digest of the config it reads and the ``output`` of
every phase it reads) and its own ``output``: a name for what it wrote. A phase is done already when its
marker's inputs equal the current ones; so a rerun with the config unchanged does nothing, a new
threshold redoes decide and export only (the score digest and the dedup phase's leave thresholds out),
and a phase redone with the same inputs leaves the phases after it done.

Outputs are named by the digest of their inputs (the phases are deterministic given them), except
ingest's, which the network decides: a new name each time it stages something, the old one otherwise.
The dedup phase stores pairs down to each detector's ``stored_from``; the clustering re-applies any
threshold above that, so dedup is done already as long as no detector now needs lower pairs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from manifests.config import dump_without
from manifests.io import read_json
from manifests.layout import RunLayout
from pipelines.run import score_units

if TYPE_CHECKING:
    from pipelines.config import RunConfig
    from pipelines.run.prepared import Run

# The phases each phase reads, besides its config.
UPSTREAM = {"ingest": (), "score": ("ingest",), "dedup": ("ingest", "score"), "decide": ("ingest", "score", "dedup"),
            "caption": ("decide",), "export": ("decide", "caption")}
LEGACY = "legacy"  # the output of a phase whose marker was written before markers named their output


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def marker(layout: RunLayout, phase: str) -> dict | None:
    """The phase's ``_DONE`` record, or None when it is not done."""
    return read_json(layout.done_marker(phase)) if layout.is_done(phase) else None


def output_of(layout: RunLayout, phase: str) -> str | None:
    found = marker(layout, phase)
    return None if found is None else found.get("output", LEGACY)


def rules_digest(config: RunConfig) -> str:
    """What the survivors depend on: every filter rule and the dedup settings."""
    rules = {"filters": config.filters.model_dump(mode="json"), "dedup": config.dedup.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()


def config_digest(run: Run, phase: str) -> str:
    """The digest of the part of the config ``phase`` reads (resources never enter: they change no result)."""
    config = run.local
    if phase == "score":
        return score_units.stages_digest(list(run.score_specs))
    if phase == "dedup":  # thresholds and the keep policy left out: decide re-applies them to the stored pairs
        return digest(dump_without(config.dedup, frozenset({"decide"})))
    if phase == "decide":
        return rules_digest(config)
    if phase == "caption":
        return score_units.stages_digest(list(run.caption_specs))
    if phase == "export":
        return digest(config.export.model_dump(mode="json"))
    return ""


def inputs(run: Run, phase: str) -> dict[str, str | None]:
    """What ``phase``'s output depends on now: its config's digest and the outputs of the phases it reads."""
    found = {name: output_of(run.layout, name) for name in UPSTREAM[phase]}
    return {"config": config_digest(run, phase), **found}


def is_current(run: Run, phase: str) -> bool:
    """Whether ``phase`` is done with the inputs it would have now (ingest: whether it is done at all)."""
    found = marker(run.layout, phase)
    if found is None:
        return False
    if phase == "ingest":
        return True  # re-crawling is never implied by a config change; --retry-failed and --redo ask for it
    if found.get("inputs") != inputs(run, phase):
        return False
    if phase == "dedup":
        return covers(found.get("stored_from", {}), run.local.dedup.stored_from())
    if phase == "score":  # a unit file stamped by other stages (or altered since) is scored again
        return not score_units.misstamped(run.layout, score_units.accepted_digests(list(run.score_specs)))
    return True


def covers(stored: dict[str, float], needed: dict[str, float]) -> bool:
    """Whether pairs stored down to ``stored`` hold every pair a config storing down to ``needed`` would."""
    return all(name in stored and stored[name] <= low + 1e-9 for name, low in needed.items())


def stamp(run: Run, phase: str, result: dict, before: str | None, fresh: bool = False) -> dict:
    """``result`` with the phase's inputs and the name of its output (``before``: the name its last run
    gave it; ``fresh``: a new name, so every phase after it runs again), as its ``_DONE`` marker records them."""
    found = inputs(run, phase)
    extra = {"stored_from": run.local.dedup.stored_from()} if phase == "dedup" else {}
    if phase == "ingest":  # what the network gave: a new name whenever something was staged
        staged = fresh or before is None or result.get("units_run", 1) > 0
        output = uuid.uuid4().hex[:16] if staged else before
    else:
        output = digest([found, extra, uuid.uuid4().hex if fresh else ""])
    return {**result, **extra, "inputs": found, "output": output}
