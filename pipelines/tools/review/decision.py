"""The live decision behind ``thresher review``: ``thresher tune``'s report for any slider setting.

The rules are ``filters.decide.reason_exprs`` under the setting's config, evaluated over the run's
manifest with its survivors re-picked as tune re-picks them: one decision, never a copy. Where the run
stored pairs, the re-pick is ``pipelines.tools.review.survivors``: the stored pairs held as node indices, and a
move re-runs ``dedup.cluster.cluster`` on the components it touches (tune re-picks every cluster, which
takes seconds to minutes). What makes a slider move cheap on 10M rows is a cache: each reason
expression's result (which rows it rejects and how many per reason) is kept under the expression's own
serialized form, so a move re-evaluates the one rule it changed -- a single column read -- and the
rest is OR-ing bitmaps. Counting follows ``manifests.tune.retune``: a row counts once under each rule
that rejects it, and is kept when no rule does.
"""

from __future__ import annotations

import copy
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from dedup.cluster import DETECTOR, SAMPLE_A, SAMPLE_B, SIMILARITY
from dedup.plan import local_tasks
from dedup.survivors import CENTROIDS_FILE
from filters.decide import CAPTION_MEASURES, reason_exprs
from manifests import reexport
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.plots import reason_counts
from manifests.tune import TuneReport
from pipelines.config import RunConfig, build_config, config_data
from pipelines.run import repick
from pipelines.run.phase_inputs import rules_digest
from pipelines.tools.review.survivors import LiveSurvivors, Picked, Repicked

REASON = "reason"
ROW = "_review_row"
STORED = "stored"  # the survivors key of the manifest's own duplicate columns
DUP_COLUMNS = {col.DUPLICATE_OF, col.DUP_KIND, col.CLUSTER_ID, col.DUP_SIMILARITY, col.DUP_DETECTOR}
SURVIVOR_SETS = 4  # re-picked survivors kept per rules digest (each a temporary directory)


def in_order(frame: pl.LazyFrame, *exprs: pl.Expr) -> pl.DataFrame:
    """``exprs`` over ``frame`` in the manifest's row order. Results of separate queries are combined row by
    row here, and polars may drop the order of a union (the per-part frames) for a select whose output it
    judges order-free -- observed for a lone elementwise expression over the re-picked parts. A row index
    makes the order observable; sorting by it is a no-op check when the order held."""
    rows = frame.with_row_index(ROW).select(ROW, *exprs).collect(engine="streaming")
    return (rows if rows[ROW].is_sorted() else rows.sort(ROW)).drop(ROW)


@dataclass(frozen=True)
class RuleResult:
    """What one reason expression does to the manifest: the rows it rejects and the count per reason."""
    rejects: pl.Series  # Boolean, one per manifest row, in manifest order
    counts: dict[str, int]


@dataclass(frozen=True)
class Decision:
    """A setting's decision over the whole manifest: tune's report and the masks behind it."""
    config: RunConfig
    report: TuneReport
    keep: pl.Series  # Boolean per row
    rules: list[tuple[pl.Expr, RuleResult]]  # in reason_exprs order
    survivors: str  # the rules digest whose survivors the duplicate rule saw

    def rejects(self, reason: str) -> pl.Series:
        """Rows any rule rejects with ``reason`` (a threshold rule's reason is constant; status and
        duplicate reasons are counted per value, so the mask is the rule's when it counted ``reason``)."""
        masks = [r.rejects for _, r in self.rules if reason in r.counts]
        return reduce(lambda a, b: a | b, masks) if masks else pl.Series([False] * len(self.keep))


class LiveDecision:
    """The run's manifest and a cache of rule results; ``decide(overrides)`` is thread-safe."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self._document = config_data(run)  # the run's config.yaml, read once
        self._configs: dict[tuple[str, ...], RunConfig] = {}
        self.base = self.config([])
        self.parts = reexport.manifest_files(RunLayout.at(run))
        self.sizes = [pq.read_metadata(p).num_rows for p in self.parts]
        stored = pl.scan_parquet([str(p) for p in self.parts])
        self.stored, self.schema = stored, stored.collect_schema()
        self.columns = set(self.schema.names())
        self._held: dict[str, pl.Series] = {}
        self.before = in_order(stored, pl.col(col.KEEP)).to_series()
        self.reasons_before = reason_counts(stored)
        self._rules: dict[tuple[str, str], RuleResult] = {}
        self._survivors: OrderedDict[str, tuple[repick.Duplicates | None, tempfile.TemporaryDirectory | None]] = \
            OrderedDict()
        self._frames: dict[str, tuple[pl.LazyFrame, list[pl.LazyFrame], set[str]]] = {}
        self._lock, self._column_lock = threading.RLock(), threading.Lock()
        self._stored_reasons: dict[str, np.ndarray] | None = None
        self.decided = repick.decided_rules(run)
        self.pairs = _live_survivors(run, stored)
        self._picked: OrderedDict[str, Picked] = OrderedDict()  # per rules digest, the last used last
        self._repicked_names = (self.columns - set(repick.EXPORT_COLUMNS)) | DUP_COLUMNS

    def in_memory(self, config: RunConfig) -> bool:
        """Whether ``config``'s survivors are re-picked here (stored pairs, rules other than the decided ones)."""
        return self.pairs is not None and rules_digest(config) != self.decided

    def config(self, overrides: list[str]) -> RunConfig:
        key = tuple(overrides)
        if key not in self._configs:  # validated once per setting (overrides write into the copy)
            self._configs[key] = build_config(copy.deepcopy(self._document), overrides)
        return self._configs[key]

    def survivors(self, config: RunConfig) -> tuple[str, repick.Duplicates | None]:
        """The duplicates rows under ``config``'s rules, re-picked once per rules digest (as tune does)."""
        digest = rules_digest(config)
        if digest not in self._survivors:
            work = tempfile.TemporaryDirectory(prefix="thresher-review-")
            found, _ = repick.for_manifest(self.run, self.parts, config, Path(work.name), local_tasks)
            self._survivors[digest] = (found, work)
            while len(self._survivors) > SURVIVOR_SETS:
                gone, (_, old) = self._survivors.popitem(last=False)
                self._frames.pop(gone, None)
                if old is not None:
                    old.cleanup()
        self._survivors.move_to_end(digest)
        found = self._survivors[digest][0]
        return (STORED if found is None else digest), found

    def frame(self, config: RunConfig) -> tuple[str, pl.LazyFrame, list[pl.LazyFrame] | Repicked]:
        """The manifest under ``config``'s survivors: whole, and per part (for reading a few rows). Built
        once per survivors set: planning a scan of a thousand parts costs most of a second. Survivors
        re-picked in memory: the stored manifest, and ``Repicked`` to give a few rows their columns."""
        if self.in_memory(config):
            with self._lock:
                digest, picked = rules_digest(config), self.picked(config)
                return digest, self.stored, Repicked(self.pairs, picked, config.dedup)
        digest, found = self.survivors(config)
        if digest not in self._frames:
            whole = repick.joined(found, self.parts)
            self._frames[digest] = (whole, repick.part_frames(found, self.parts), set(whole.collect_schema().names()))
        whole, parts, _ = self._frames[digest]
        return digest, whole, parts

    def column(self, name: str) -> pl.Series:
        """A column held once, in manifest order: numbers as stored, the status as a categorical, a caption
        measure (``CAPTION_MEASURES``) as computed from the caption."""
        with self._column_lock:
            if name not in self._held:
                column = CAPTION_MEASURES[name] if name in CAPTION_MEASURES else pl.col(name)
                if name == col.STATUS:
                    column = column.cast(pl.Categorical)
                self._held[name] = in_order(self.stored, column.alias(name)).to_series()
            return self._held[name]

    def holds(self, name: str) -> bool:
        """Whether ``name`` is small enough to hold: a number, the status or a caption measure."""
        return name in CAPTION_MEASURES or name == col.STATUS or self.schema.get(name, pl.String).is_numeric()

    def _evaluate(self, frame: pl.LazyFrame, expr: pl.Expr, roots: list[str]) -> pl.Series:
        """The rule over held columns when it reads only those (a slider move: one comparison in memory,
        not a read of every part), else over the parts."""
        if roots and all(self.holds(r) for r in roots):
            return pl.DataFrame([self.column(r) for r in dict.fromkeys(roots)]).select(expr.alias(REASON)).to_series()
        return in_order(frame, expr.alias(REASON)).to_series()

    def with_reason(self, reason: str) -> np.ndarray:
        """Rows whose stored ``reject_reasons`` hold ``reason`` (sorted row indices)."""
        return self._reason_rows().get(reason, np.empty(0, dtype=np.uint32))

    def _reason_rows(self) -> dict[str, np.ndarray]:
        """Every stored reason's rows, from one read of the column."""
        with self._column_lock:
            if self._stored_reasons is None:
                listed = self.stored.with_row_index("i").select("i", pl.col(col.REJECT_REASONS).cast(
                    pl.List(pl.Categorical))).explode(col.REJECT_REASONS).drop_nulls().collect(engine="streaming")
                self._stored_reasons = {r: np.sort(rows["i"].to_numpy()) for (r,), rows
                                        in listed.partition_by(col.REJECT_REASONS, as_dict=True).items()}
            return self._stored_reasons

    def warm(self) -> None:
        """What the first requests need, made at start: the run's own decision (every rule evaluated, the
        columns it reads held), the rows of every stored reason and, with stored pairs, the survivors under
        the run's own rules (every cluster walked once, so a move re-picks only what it touches)."""
        self.decide([])
        self._reason_rows()
        if self.pairs is not None:
            with self._lock:
                self.picked(self.base)

    def picked(self, config: RunConfig) -> Picked:
        """The survivors under ``config``, stepped from the nearest cached setting's (call under ``_lock``)."""
        digest = rules_digest(config)
        if digest not in self._picked:
            exprs = [e for e in reason_exprs(config.filters, self._repicked_names, measured=True)
                     if not DUP_COLUMNS & set(e.meta.root_names())]
            rejected = [self._rule(self.stored, e, digest).rejects for e in exprs]
            eligible = ~reduce(lambda a, b: a | b, rejected).to_numpy() if rejected else np.ones(len(self.before), bool)
            last = self.pairs.nearest(list(self._picked.values()), config.dedup, eligible)
            self._picked[digest] = self.pairs.pick(last, config.dedup, eligible)
            while len(self._picked) > SURVIVOR_SETS:
                self._picked.popitem(last=False)
        self._picked.move_to_end(digest)
        return self._picked[digest]

    def _duplicate_rule(self, config: RunConfig, expr: pl.Expr, digest: str) -> RuleResult:
        """The duplicate rule over the nodes' re-picked columns; rows in no counted pair it never rejects."""
        key = (digest, expr.meta.serialize(format="json"))
        if key not in self._rules:
            values = self.pairs.columns(self.picked(config)).select(expr.alias(REASON)).to_series()
            rows, inside = self.pairs.rows, pl.Series(self.pairs.rows >= 0)
            rejects = np.zeros(len(self.before), bool)
            rejects[rows[(values.is_not_null() & inside).to_numpy()]] = True
            counts = values.filter(inside).drop_nulls().value_counts()
            self._rules[key] = RuleResult(pl.Series(REASON, rejects), dict(counts.iter_rows()))
        return self._rules[key]

    def _rule(self, frame: pl.LazyFrame, expr: pl.Expr, digest: str) -> RuleResult:
        roots = expr.meta.root_names()
        reads_dups = bool(DUP_COLUMNS & set(roots))
        key = (digest if reads_dups else "", expr.meta.serialize(format="json"))
        if key not in self._rules:
            values = self._evaluate(frame, expr, [] if reads_dups else roots)
            counts = values.drop_nulls().value_counts()
            self._rules[key] = RuleResult(values.is_not_null(), dict(counts.iter_rows()))
        return self._rules[key]

    def decide(self, overrides: list[str]) -> Decision:
        config = self.config(overrides)
        with self._lock:
            if self.in_memory(config):
                return self._decide_in_memory(config)
            digest, frame, _ = self.frame(config)
            names = self._frames[digest][2]
            exprs = reason_exprs(config.filters, names, measured=True)
            rules = [(e, self._rule(frame, e, digest)) for e in exprs]
        rejected = reduce(lambda a, b: a | b, [r.rejects for _, r in rules]) if rules \
            else pl.Series([False] * len(self.before))
        keep = ~rejected
        return Decision(config, self._report(keep, rules), keep, rules, digest)

    def _decide_in_memory(self, config: RunConfig) -> Decision:
        digest = rules_digest(config)
        rules = []
        for expr in reason_exprs(config.filters, self._repicked_names, measured=True):
            reads_dups = bool(DUP_COLUMNS & set(expr.meta.root_names()))
            rules.append((expr, self._duplicate_rule(config, expr, digest) if reads_dups
                          else self._rule(self.stored, expr, digest)))
        keep = ~reduce(lambda a, b: a | b, [r.rejects for _, r in rules])
        return Decision(config, self._report(keep, rules), keep, rules, digest)

    def _report(self, keep: pl.Series, rules: list[tuple[pl.Expr, RuleResult]]) -> TuneReport:
        after: dict[str, int] = {}
        for _, result in rules:
            for reason, n in result.counts.items():
                after[reason] = after.get(reason, 0) + n
        both = int((keep & self.before).sum())
        kept_after, kept_before = int(keep.sum()), int(self.before.sum())
        return TuneReport(rows=len(keep), kept_before=kept_before, kept_after=kept_after, kept_both=both,
                          newly_kept=kept_after - both, newly_rejected=kept_before - both,
                          reasons_before=dict(self.reasons_before), reasons_after=after)

    def close(self) -> None:
        for _, work in self._survivors.values():
            if work is not None:
                work.cleanup()
        self._survivors.clear()


def _live_survivors(run: Path, stored: pl.LazyFrame) -> LiveSurvivors | None:
    """The run's stored pairs held for in-memory re-picks; None when it stored none."""
    layout = repick.pairs_layout(run)
    files = layout.pairs_files()
    if not files:
        return None
    pairs = pl.scan_parquet([str(f) for f in files]).select(SAMPLE_A, SAMPLE_B, DETECTOR, SIMILARITY).collect()
    return LiveSurvivors(stored, pairs, layout.pairs.with_name(CENTROIDS_FILE))
