"""What-if thresholds: re-apply a decision to a manifest and compare it with the decision it holds.

Reads only the manifest (the columns the decision needs plus ``keep`` / ``reject_reasons``): no
image, no model. The new decision is given as its reason expressions (``filters.decide.reason_exprs``:
one string-or-null column per rule, the very expressions ``decide`` lists), which keeps this module
free of ``filters``. Counting them directly, rather than building each row's list of reasons as
``decide`` does, is what makes 10M rows take seconds: the list building alone costs most of a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import polars as pl

from manifests import schema as col

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


def _reason_counts(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
    return (frame.select(pl.col(column).explode().alias(REASON)).drop_nulls()
            .group_by(REASON).len())


def _counted(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
    return frame.select(pl.col(column).alias(REASON)).drop_nulls().group_by(REASON).len()


def compared(manifest: pl.LazyFrame, reasons: list[pl.Expr]) -> tuple[pl.LazyFrame, list[str]]:
    """The old decision as ``*_before``, one column per new reason expression, and the new ``keep``."""
    names = manifest.collect_schema().names()
    missing = [c for c in (col.KEEP, col.REJECT_REASONS) if c not in names]
    if missing:
        raise ValueError(f"the manifest has no {missing} column(s); was the decide phase run?")
    rules = [f"_reason_{i}" for i in range(len(reasons))]
    keep = pl.all_horizontal([pl.col(r).is_null() for r in rules]) if rules else pl.lit(True)
    frame = manifest.select(pl.col(col.KEEP).alias(KEEP_BEFORE), pl.col(col.REJECT_REASONS).alias(REASONS_BEFORE),
                            *[e.alias(r) for e, r in zip(reasons, rules)])
    return frame.with_columns(keep.alias(col.KEEP)), rules


def retune(manifest: pl.LazyFrame, reasons: list[pl.Expr]) -> TuneReport:
    """Old decision against the one ``reasons`` (string-or-null expressions, one per rule) give."""
    frame, rules = compared(manifest, reasons)
    overlap, before, *after = pl.collect_all([
        frame.group_by(KEEP_BEFORE, col.KEEP).len(),
        _reason_counts(frame, REASONS_BEFORE),
        *[_counted(frame, r) for r in rules],
    ])
    cells = {(b, a): n for b, a, n in overlap.iter_rows()}
    reasons_after: dict[str, int] = {}
    for counts in after:
        for reason, n in counts.iter_rows():
            reasons_after[reason] = reasons_after.get(reason, 0) + n
    return TuneReport(
        rows=sum(cells.values()),
        kept_before=cells.get((True, True), 0) + cells.get((True, False), 0),
        kept_after=cells.get((True, True), 0) + cells.get((False, True), 0),
        kept_both=cells.get((True, True), 0),
        newly_kept=cells.get((False, True), 0),
        newly_rejected=cells.get((True, False), 0),
        reasons_before=dict(before.iter_rows()),
        reasons_after=reasons_after,
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
