"""What the review app's handlers ask of a run: cards, a sample's page, grids, labels, estimates, export.

Everything a page shows of a row goes through ``card``/``sample`` as plain JSON values; the page
renders them as text. A setting (slider key -> value) becomes ``--set`` overrides through
``sliders.overrides`` and is decided by ``LiveDecision`` (tune's code).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from filters.decide import SCORE_COLUMNS, decide
from manifests import reexport
from manifests import schema as col
from manifests.schema import Reason, Status
from pipelines.tools.review import labels as lab
from pipelines.tools.review import sliders as sl
from pipelines.tools.review.decision import Decision, LiveDecision
from pipelines.tools.review.images import StagedImages
from pipelines.tools.review.rows import INDEX, PAGE, ManifestRows, Query, Search

GRID = 24
HIDDEN = col.ARTEFACT_COLUMNS  # embeddings and signatures: bytes, not something to read


def _plain(value):
    """A JSON-safe value: lists stay lists, floats lose NaN/inf, bytes are summarised."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value if value is None or isinstance(value, (str, int, bool)) else str(value)


class Review:
    def __init__(self, run: Path, who: str) -> None:
        self.run, self.who = run, who
        self.live = LiveDecision(run)
        self.rows = ManifestRows(self.live.parts, self.live.sizes)
        self.search = Search(self.live)
        self.images = StagedImages(reexport.images_root(run))
        stored = self.live.stored
        self.sliders = sl.sliders(self.live.base, run, stored, self.live.columns)
        self.histograms = {s.key: sl.histogram(stored, s) for s in self.sliders if s.column}
        self.scores = [c for c in SCORE_COLUMNS if c in self.live.columns]
        self.labels_path = run / lab.LABELS_FILE
        self.locations: dict[int, tuple[str, str]] = {}
        self.live.warm()

    # --- settings and decisions ---------------------------------------------------------------
    def decision(self, setting: dict) -> Decision:
        return self.live.decide(sl.overrides(self.sliders, setting))

    def meta(self) -> dict:
        statuses = sorted(self.live.column(col.STATUS).drop_nulls().unique().cast(pl.String))
        return {"run": str(self.run), "rows": len(self.live.before), "who": self.who,
                "sliders": [sl.as_json(s) for s in self.sliders], "histograms": self.histograms,
                "reasons": sorted(self.live.reasons_before), "statuses": statuses,
                "scores": self.scores, "labels": lab.LABELS}

    def counts(self, setting: dict) -> dict:
        overrides = sl.overrides(self.sliders, setting)
        report = self.live.decide(overrides).report
        return {"report": report.as_dict(), "overrides": overrides}

    def export(self, setting: dict) -> dict:
        overrides = sl.overrides(self.sliders, setting)
        report = self.live.decide(overrides).report
        return {"overrides": overrides, "snippet": sl.snippet(overrides), "kept": report.kept_after,
                "command": sl.reexport_command(self.run, overrides)}

    def close(self) -> None:
        self.images.close()
        self.live.close()

    # --- rows as the page shows them ----------------------------------------------------------
    def cards(self, indices: list[int], decision: Decision | None = None, strata: dict[int, str] | None = None) -> list[dict]:
        frames = None
        if decision is not None:
            frames = self.live.frame(decision.config)[2]
        rows = self.rows.rows_at(indices, frames)
        pending = decide(rows.lazy(), decision.config.filters).select(col.REJECT_REASONS).collect().to_series() \
            if decision is not None and rows.height else None
        stored = self.rows.rows_at(indices) if frames is not None else rows
        out = []
        for i, row in enumerate(rows.iter_rows(named=True)):
            before = stored.row(i, named=True)
            out.append(self._card(row, before, None if pending is None else list(pending[i]), decision,
                                  (strata or {}).get(row[INDEX])))
        self.images.prefetch([self.locations[c["row"]] for c in out if c["image"]])
        return out

    def _card(self, row: dict, stored: dict, pending: list[str] | None, decision: Decision | None,
              stratum: str | None) -> dict:
        index = row[INDEX]
        shard, member = row.get(col.SHARD), row.get(col.MEMBER)
        image = bool(shard and member) and self.images.inside(shard)
        if image:
            self.locations[index] = (shard, member)
        reasons = list(stored.get(col.REJECT_REASONS) or [])
        return {"row": index, "sample_id": row[col.SAMPLE_ID], "caption": row.get(col.CAPTION),
                "url": row.get(col.URL), "status": row.get(col.STATUS), "keep": stored.get(col.KEEP),
                "reasons": reasons, "pending_reasons": pending,
                "pending_keep": None if decision is None else bool(decision.keep[index]),
                "scores": {c: _plain(row.get(c)) for c in self.scores},
                "blur": Reason.NSFW in reasons or Reason.NSFW in (pending or []),
                "image": image, "duplicate_of": row.get(col.DUPLICATE_OF), "stratum": stratum}

    def sample(self, index: int, setting: dict) -> dict:
        decision = self.decision(setting)
        card = self.cards([index], decision)[0]
        frames = self.live.frame(decision.config)[2]
        row = self.rows.rows_at([index], frames).row(0, named=True)
        fields = {k: _plain(v) for k, v in row.items() if k not in HIDDEN and k != INDEX}
        survivor = None
        if row.get(col.DUPLICATE_OF):
            found = self.rows.index_of([row[col.DUPLICATE_OF]])
            if found:
                survivor = self.cards([found[row[col.DUPLICATE_OF]]], decision)[0]
        link = {"detector": row.get(col.DUP_DETECTOR), "similarity": _plain(row.get(col.DUP_SIMILARITY)),
                "kind": row.get(col.DUP_KIND), "cluster": _plain(row.get(col.CLUSTER_ID))}
        return {"card": card, "fields": fields, "survivor": survivor, "link": link}

    def thumb(self, index: int) -> bytes | None:
        if index not in self.locations:
            row = self.rows.rows_at([index]).row(0, named=True)
            if not (row.get(col.SHARD) and row.get(col.MEMBER)):
                return None
            self.locations[index] = (row[col.SHARD], row[col.MEMBER])
        return self.images.thumb(*self.locations[index])

    # --- grids ---------------------------------------------------------------------------------
    def flips(self, setting: dict, which: str, n: int = GRID, seed: int = 0) -> dict:
        decision = self.decision(setting)
        before, after = self.live.before, decision.keep
        mask = (before & ~after) if which == "newly_rejected" else (~before & after)
        rows = np.flatnonzero(mask.to_numpy())
        total = len(rows)
        if total > n:
            rows = np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))
        return {"total": total, "cards": self.cards([int(r) for r in rows], decision)}

    def nearest(self, setting: dict, key: str, n: int = GRID // 2) -> dict:
        slider = next((s for s in self.sliders if s.key == key and s.column), None)
        if slider is None:
            raise ValueError(f"{key!r} has no score column to sort by")
        decision = self.decision(setting)
        value = float(setting.get(key, slider.value))
        scores = self.live.column(slider.column).cast(pl.Float64).to_numpy()  # null: NaN, as NaN is
        ok = (self.live.column(col.STATUS) == Status.SUCCESS).fill_null(False).to_numpy()
        below = _closest(_near(scores, ok, value, n, below=True), -scores, n)
        above = _closest(_near(scores, ok, value, n, below=False), scores, n)
        return {"value": value, "below": self.cards(below, decision), "above": self.cards(above, decision)}

    def browse(self, query: Query, setting: dict) -> dict:
        found = self.search.rows(query)
        page = found[max(query.page, 0) * PAGE:][:PAGE]
        return {"total": len(found), "page": query.page, "cards": self.cards(page.tolist(), self.decision(setting))}

    # --- labels --------------------------------------------------------------------------------
    def _population(self, decision: Decision, rule: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rejected by ``rule``, kept, the band of every row by the rule's score)."""
        rejected = decision.rejects(rule).to_numpy()
        kept = decision.keep.to_numpy()
        slider = next((s for s in self.sliders if s.reason == rule and s.column), None)
        scores = None
        if slider is not None:
            scores = self.live.column(slider.column).fill_nan(None).cast(pl.Float64).fill_null(float("nan")).to_numpy()
        return rejected, kept, lab.bands(scores, rejected | kept)

    def queue(self, setting: dict, rule: str, side: str, n: int, seed: int) -> dict:
        decision = self.decision(setting)
        rejected, kept, band = self._population(decision, rule)
        members = rejected if side == "rejected" else kept
        drawn = lab.draw(members, band, n, seed)
        strata = {row: f"{side} {name}" for row, name in drawn}
        return {"rule": rule, "side": side, "population": int(members.sum()),
                "cards": self.cards([r for r, _ in drawn], decision, strata)}

    def label(self, row: int, sample_id: str, label: str, rule: str, stratum: str) -> int:
        found = self.rows.rows_at([row]).row(0, named=True)
        if found[col.SAMPLE_ID] != sample_id:
            raise ValueError(f"row {row} is {found[col.SAMPLE_ID]!r}, not {sample_id!r}")
        return lab.add_label(self.labels_path, self.who, sample_id, label, rule or "", stratum or "", row)

    def labels(self) -> list[dict]:
        table = lab.read_labels(self.labels_path).sort("when").group_by("sample_id").last()
        return [{k: _plain(v) for k, v in r.items()} for r in table.iter_rows(named=True)]

    def estimates(self, setting: dict) -> list[dict]:
        decision = self.decision(setting)
        labelled = lab.latest(lab.read_labels(self.labels_path))
        out = []
        if labelled.height == 0:
            return out
        rows = labelled["row"].to_numpy()
        bad = (labelled["label"] == "bad").to_numpy()
        for rule in sorted(r for r, n in decision.report.reasons_after.items() if n):
            rejected, kept, band = self._population(decision, rule)
            precision = lab.stratified(rejected, band, rows, bad)
            left = lab.stratified(kept, band, rows, bad)
            out.append({"rule": rule, "rejected": int(rejected.sum()), "kept": int(kept.sum()),
                        "precision": precision.as_dict(), "bad_among_kept": left.as_dict(),
                        "recall": lab.recall(precision, left, int(rejected.sum()), int(kept.sum()))})
        return out


def _near(scores: np.ndarray, ok: np.ndarray, value: float, n: int, below: bool) -> np.ndarray:
    """Rows of ``ok`` in a window beside ``value`` (below: [value - w, value); above: [value, value + w]) that
    holds ``n`` of them or every one on that side: the ``n`` closest are among them (NaN is in no window)."""
    on_side = ok & (scores < value if below else scores >= value)
    side = scores[on_side]
    if len(side) <= n:
        return np.flatnonzero(on_side)
    width, reach = 1e-3 * (abs(value) + 1), float(value - side.min() if below else side.max() - value)
    while width < reach:
        window = (scores >= value - width) if below else (scores <= value + width)
        rows = np.flatnonzero(on_side & window)
        if len(rows) >= n:
            return rows
        width *= 8
    return np.flatnonzero(on_side)


def _closest(rows: np.ndarray, key: np.ndarray, n: int) -> list[int]:
    """The ``n`` of ``rows`` (ascending) with the least ``key`` (one per manifest row), least first, ties by row."""
    keys = key[rows]
    if len(rows) > n:
        if n <= 0:
            return []
        kth = np.partition(keys, n - 1)[n - 1]
        inside = keys < kth
        inside[np.flatnonzero(keys == kth)[:n - np.count_nonzero(inside)]] = True  # the boundary's ties: first rows
        rows, keys = rows[inside], keys[inside]
    return rows[np.lexsort((rows, keys))].tolist()
