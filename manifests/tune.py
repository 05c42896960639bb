"""What-if thresholds: re-apply a decision to a manifest and compare it with the decision it holds.

Reads only the manifest (the columns the decision needs plus ``keep`` / ``reject_reasons``): no
image, no model. Everything is one lazy Polars plan collected once, so 10M rows take seconds.
The decision is passed in (``filters.decide.decide`` bound to a config), which keeps this module
free of ``filters`` and lets tests pass their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import polars as pl

from manifests import schema as col

Decision = Callable[[pl.LazyFrame], pl.LazyFrame]  # adds (or replaces) keep and reject_reasons

KEEP_BEFORE = "keep_before"
REASONS_BEFORE = "reject_reasons_before"
REASON = "reason"


@dataclass(frozen=True)
class TuneReport:
    rows: int
    kept_before: int
    kept_after: int
    kept_both: int
    newly_kept: int
    newly_rejected: int
    reasons_before: dict[str, int] = field(default_factory=dict)  # a row counts once under each reason
    reasons_after: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def compared(manifest: pl.LazyFrame, decision: Decision) -> pl.LazyFrame:
    """The manifest with its old decision renamed to ``*_before`` and the new one under the usual names."""
    names = manifest.collect_schema().names()
    missing = [c for c in (col.KEEP, col.REJECT_REASONS) if c not in names]
    if missing:
        raise ValueError(f"the manifest has no {missing} column(s); was the decide phase run?")
    renamed = manifest.rename({col.KEEP: KEEP_BEFORE, col.REJECT_REASONS: REASONS_BEFORE})
    return decision(renamed)


def _reason_counts(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
    return (frame.select(pl.col(column).explode().alias(REASON)).drop_nulls()
            .group_by(REASON).len().sort(REASON))


def retune(manifest: pl.LazyFrame, decision: Decision) -> TuneReport:
    both = compared(manifest, decision).select(KEEP_BEFORE, REASONS_BEFORE, col.KEEP, col.REJECT_REASONS)
    overlap, before, after = pl.collect_all([
        both.group_by(KEEP_BEFORE, col.KEEP).len(),
        _reason_counts(both, REASONS_BEFORE),
        _reason_counts(both, col.REJECT_REASONS),
    ])
    cells = {(b, a): n for b, a, n in overlap.iter_rows()}
    return TuneReport(
        rows=sum(cells.values()),
        kept_before=cells.get((True, True), 0) + cells.get((True, False), 0),
        kept_after=cells.get((True, True), 0) + cells.get((False, True), 0),
        kept_both=cells.get((True, True), 0),
        newly_kept=cells.get((False, True), 0),
        newly_rejected=cells.get((True, False), 0),
        reasons_before=dict(before.iter_rows()),
        reasons_after=dict(after.iter_rows()),
    )


def _line(label: str, before: int, after: int) -> str:
    return f"  {label:<36}{before:>12,}{after:>12,}{after - before:>+12,}"


def format_report(report: TuneReport) -> str:
    reasons = sorted(set(report.reasons_before) | set(report.reasons_after))
    lines = [f"  {'':<36}{'before':>12}{'after':>12}{'change':>12}",
             _line("rows", report.rows, report.rows),
             _line("kept", report.kept_before, report.kept_after),
             _line("rejected", report.rows - report.kept_before, report.rows - report.kept_after),
             "", "  rejected per reason (a row counts under each of its reasons)"]
    lines += [_line("  " + r, report.reasons_before.get(r, 0), report.reasons_after.get(r, 0)) for r in reasons] \
        or ["    (none)"]
    lines += ["", "  overlap",
              f"    {'kept in both':<34}{report.kept_both:>12,}",
              f"    {'newly kept':<34}{report.newly_kept:>12,}",
              f"    {'newly rejected':<34}{report.newly_rejected:>12,}"]
    return "\n".join(lines)
