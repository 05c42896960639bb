"""Survivors re-picked in memory for ``thresher review``: a move re-runs the keep policy only where it can change.

``thresher tune`` re-picks every duplicate cluster from the stored pairs (``pipelines.run.repick``), seconds to
minutes on a large run. A slider move changes which rows are eligible (pass every rule but dedup) or, for a
dedup threshold, which stored pairs count; a component with no row of changed eligibility and no pair across
the moved threshold keeps its survivors. So the app holds the stored pairs as int32 node indices (nodes: the
paired samples, sorted by sample_id as ``cluster`` numbers them, each with its manifest row), and per setting
the components of the counted pairs (``dedup.keep.union_find``) and each node's survivor and link kind.
A move re-runs ``dedup.cluster.cluster`` -- the policy itself, never a copy -- on the touched components only.

Two-member components, most of a run's, skip greedy's per-node walk (a Python loop, ~20 us a node): in
one, both keep modes keep the better ranked member and drop the other (every link kind makes it a
duplicate). So one whose pairs changed goes through ``cluster(..., mode="component")``, vectorised; one
whose pairs did not is settled by ``dedup.keep.keep_per_component`` over ``cluster``'s own ranking, its
link -- which does not depend on which member survives -- kept from when ``cluster`` last explained it.
tests/manifests/test_review_survivors.py checks every path against tune's re-pick over every pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from dedup.cluster import (DETECTOR, SAMPLE_A, SAMPLE_B, SIMILARITY, _ranked, _threshold_edges, cluster, cluster_nodes,
                            with_kind)
from dedup.config import DedupConfig
from dedup.keep import keep_per_component, union_find
from dedup.survivors import (DUP_COLUMNS, ELIGIBLE, join_duplicates, keep_order, keep_scores, switched_off,
                             with_centroid_distance, without_duplicates)
from manifests import schema as col
from manifests.schema import DupKind
from pipelines.run import repick

KINDS = (DupKind.EXACT, DupKind.IMAGE, DupKind.CAPTION, DupKind.SEMANTIC)  # a node's kind: an index, -1 none
NODE = "node"
COUNTED_SETS = 16  # threshold settings whose counted pairs are kept (a bool per pair each)


@dataclass(frozen=True)
class Picked:
    """The survivors under one setting's dedup config and eligibility, per node (and ``counted`` per pair)."""
    policy: tuple  # (keep order, keep mode): another policy starts from nothing
    thresholds: dict[str, float]
    counted: np.ndarray  # bool per stored pair: enabled detector, at or above its threshold
    component: np.ndarray  # root node per node over the counted pairs
    eligible: np.ndarray  # bool per node
    survivor: np.ndarray  # int32 per node: itself when kept or in no counted pair
    kind: np.ndarray  # int8 per node: KINDS index of its link to the survivor, -1 when it survives

    def dropped(self) -> np.ndarray:
        return self.survivor != np.arange(len(self.survivor))


class LiveSurvivors:
    """A run's stored pairs over its manifest rows, and the step from one setting's survivors to another's.

    ``stored``: the manifest's parts as one lazy frame; ``pairs``: the stored pairs (``dedup.survivors.
    stored_pairs`` with nothing switched off); ``centroids``: where the semantic detector left its distances.
    Memory ~ the pairs: node ids, rows and keep-policy scores, and two int32 per pair.
    """

    def __init__(self, stored: pl.LazyFrame, pairs: pl.DataFrame, centroids: Path) -> None:
        self.ids = pl.concat([pairs[SAMPLE_A], pairs[SAMPLE_B]]).unique().sort().rename(col.SAMPLE_ID)
        self.a = self.ids.search_sorted(pairs[SAMPLE_A]).to_numpy().astype(np.int32)
        self.b = self.ids.search_sorted(pairs[SAMPLE_B]).to_numpy().astype(np.int32)
        self.links = with_kind(pairs.select(DETECTOR, pl.col(SIMILARITY).cast(pl.Float32)))
        self.stored, self.centroids = stored, centroids
        found = (stored.with_row_index("_row").select("_row", col.SAMPLE_ID)
                 .filter(pl.col(col.SAMPLE_ID).is_in(self.ids.implode())).collect(engine="streaming"))
        self.rows = np.full(len(self.ids), -1, np.int64)  # -1: paired, but not in this manifest (a re-export)
        self.rows[self.ids.search_sorted(found[col.SAMPLE_ID]).to_numpy()] = found["_row"].to_numpy()
        self._by_row = np.argsort(self.rows)  # nodes in row order, to find the node of a row
        self._scores: dict[tuple[str, ...], pl.DataFrame] = {}
        self._rank: dict[tuple[str, ...], np.ndarray] = {}
        self._counted: dict[tuple, np.ndarray] = {}

    @property
    def n(self) -> int:
        return len(self.ids)

    # --- what a setting asks for -------------------------------------------------------------------
    def scores(self, dedup: DedupConfig) -> pl.DataFrame:
        """Per node, in node order: sample_id and the keep-policy columns as ``keep_scores`` reads them (nulls for
        a node outside the manifest), without ``eligible``. Read once per keep order."""
        order = keep_order(dedup)
        if order not in self._scores:
            frame = with_centroid_distance(without_duplicates(self.stored), self.centroids, dedup)
            paired = frame.filter(pl.col(col.SAMPLE_ID).is_in(self.ids.implode()))
            found = keep_scores(paired, lambda f: f.select(col.SAMPLE_ID, pl.lit(True).alias(col.KEEP)), order)
            self._scores[order] = self.ids.to_frame().join(found.drop(ELIGIBLE), on=col.SAMPLE_ID, how="left",
                                                           maintain_order="left")
        return self._scores[order]

    def best_first(self, dedup: DedupConfig, eligible: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Positions in ``nodes`` best first by the keep policy, as ``cluster._ranked`` ranks their scores: eligible,
        then not, then outside the manifest (eligible null: nulls last); then the rest of the keep order."""
        order = keep_order(dedup)
        if order not in self._rank:  # the rest of the order ranks every node once per keep order
            assert order[0] == ELIGIBLE, order
            best = _ranked(self.ids.to_frame().with_columns(pl.int_range(self.n).alias(NODE)), self.scores(dedup),
                           order[1:])
            self._rank[order] = np.empty(self.n, np.int64)
            self._rank[order][best] = np.arange(self.n)
        first = np.where(self.rows[nodes] < 0, 2, np.where(eligible[nodes], 0, 1))
        return np.argsort(first * self.n + self._rank[order][nodes], kind="stable")  # one key: (first, rank)

    def counted(self, dedup: DedupConfig) -> np.ndarray:
        """Which stored pairs count under ``dedup``: ``cluster``'s own threshold test over the enabled detectors."""
        thresholds, off = dedup.thresholds(), sorted(switched_off(dedup))
        key = (tuple(sorted(thresholds.items())), tuple(off))
        if key not in self._counted:
            on = self.links.with_row_index("_pair").filter(~pl.col(DETECTOR).is_in(off))
            counted = np.zeros(len(self.a), bool)
            counted[_threshold_edges(on, thresholds)["_pair"].to_numpy()] = True
            self._counted[key] = counted
            while len(self._counted) > COUNTED_SETS:
                self._counted.pop(next(iter(self._counted)))
        return self._counted[key]

    def node_eligible(self, eligible_rows: np.ndarray) -> np.ndarray:
        inside = self.rows >= 0
        out = np.zeros(self.n, bool)
        out[inside] = eligible_rows[self.rows[inside]]
        return out

    def empty(self, dedup: DedupConfig) -> Picked:
        """Nothing counted: every node its own survivor (the step to a setting from here walks every cluster)."""
        n = self.n
        return Picked((keep_order(dedup), dedup.keep.mode), {}, np.zeros(len(self.a), bool), np.arange(n),
                      np.zeros(n, bool), np.arange(n, dtype=np.int32), np.full(n, -1, np.int8))

    # --- the step ------------------------------------------------------------------------------------
    def nearest(self, states: list[Picked], dedup: DedupConfig, eligible_rows: np.ndarray) -> Picked | None:
        """Of ``states``, the cheapest to step from to ``dedup`` and ``eligible_rows``: the fewest pairs counted
        otherwise (each touches a component that must be walked), then the fewest nodes of other eligibility.
        A dedup slider dragged up and back steps from where it started, not from its far end."""
        policy = (keep_order(dedup), dedup.keep.mode)
        counted, eligible = self.counted(dedup), self.node_eligible(eligible_rows)

        def cost(state: Picked) -> tuple[int, int]:
            return int(np.count_nonzero(state.counted != counted)), int(np.count_nonzero(state.eligible != eligible))

        return min((s for s in states if s.policy == policy), default=None, key=cost)

    def pick(self, last: Picked | None, dedup: DedupConfig, eligible_rows: np.ndarray) -> Picked:
        """The survivors under ``dedup`` and ``eligible_rows`` (bool per manifest row), from ``last``'s: only the
        components holding a node whose eligibility changed or a pair whose counting changed are re-picked."""
        policy = (keep_order(dedup), dedup.keep.mode)
        if last is None or last.policy != policy:
            last = self.empty(dedup)
        counted, eligible = self.counted(dedup), self.node_eligible(eligible_rows)
        crossing = counted != last.counted
        component = _components(self.n, self.a, self.b, counted, last)
        relinked = np.zeros(self.n, bool)  # nodes with a pair that started or stopped counting
        relinked[self.a[crossing]] = relinked[self.b[crossing]] = True
        touched = _members(component, relinked | (eligible != last.eligible))
        size = np.bincount(component, minlength=self.n)[component]
        same_links = ~_members(component, relinked)
        survivor, kind = last.survivor.copy(), last.kind.copy()
        alone = np.flatnonzero(touched & (size == 1))
        survivor[alone], kind[alone] = alone, -1
        picked = Picked(policy, dedup.thresholds(), counted, component, eligible, survivor, kind)
        two, big = touched & (size == 2), touched & (size > 2)
        self._settle_pairs(picked, last, np.flatnonzero(two & same_links), dedup)
        reordered = self._reordered(last, picked, np.flatnonzero(big & same_links), dedup)
        for walk, mode in ((two & ~same_links, "component"), ((big & ~same_links) | reordered, dedup.keep.mode)):
            if walk.any():
                self._walk(picked, walk, dedup, mode)
        return picked

    def _with_eligible(self, dedup: DedupConfig, eligible: np.ndarray, nodes: np.ndarray) -> pl.DataFrame:
        """``keep_scores``'s frame for ``nodes``: eligible null where the node is not in the manifest."""
        frame = self.scores(dedup)[nodes]
        outside = pl.Series(self.rows[nodes] < 0)
        return frame.with_columns(pl.Series(ELIGIBLE, eligible[nodes]).set(outside, None))

    def _settle_pairs(self, picked: Picked, last: Picked, nodes: np.ndarray, dedup: DedupConfig) -> None:
        """Two-member components with unchanged pairs: the better ranked member survives, with the old link."""
        if not len(nodes):
            return
        link = np.full(self.n, -1, np.int8)
        np.maximum.at(link, picked.component[nodes], last.kind[nodes])  # the dropped member's kind, per root
        best = keep_per_component(self.best_first(dedup, picked.eligible, nodes),
                                  np.searchsorted(nodes, picked.component[nodes]))
        picked.survivor[nodes] = nodes[best]
        picked.kind[nodes] = np.where(best != np.arange(len(nodes)), link[picked.component[nodes]], -1)

    def _reordered(self, last: Picked, picked: Picked, nodes: np.ndarray, dedup: DedupConfig) -> np.ndarray:
        """Bool per node: in a component of ``nodes`` whose best-first order differs between ``last``'s
        eligibility and ``picked``'s. ``cluster`` reads a component's scores only through that order (its
        ranking), so a component whose pairs and order stand keeps its survivors and links."""
        def rank(eligible: np.ndarray) -> np.ndarray:
            best_first = self.best_first(dedup, eligible, nodes)
            out = np.empty(len(nodes), np.int64)
            out[best_first] = np.arange(len(nodes))
            return out

        if not len(nodes):
            return np.zeros(self.n, bool)
        component = picked.component[nodes]  # the first sort key: a component's nodes sit at the same places
        before = np.lexsort((rank(last.eligible), component))
        after = np.lexsort((rank(picked.eligible), component))
        moved = np.zeros(self.n, bool)
        moved[nodes[before[before != after]]] = True
        return _members(picked.component, moved)

    def duplicates(self, picked: Picked, nodes: np.ndarray, dedup: DedupConfig, mode: str | None = None) -> pl.DataFrame:
        """``cluster``'s duplicates table for the components of ``nodes`` (bool per node) under ``picked``;
        ``mode``: the keep mode, default ``dedup``'s."""
        inside = _members(picked.component, nodes)
        pairs = np.flatnonzero(picked.counted & inside[self.a])
        frame = pl.DataFrame({SAMPLE_A: self.ids.gather(self.a[pairs]), SAMPLE_B: self.ids.gather(self.b[pairs])})
        frame = pl.concat([frame, self.links[pairs]], how="horizontal")
        scores = self._with_eligible(dedup, picked.eligible, np.flatnonzero(inside))
        return cluster(frame, picked.thresholds, scores, keep_order(dedup), mode or dedup.keep.mode)

    def _walk(self, picked: Picked, nodes: np.ndarray, dedup: DedupConfig, mode: str) -> None:
        """``cluster``'s policy (``cluster_nodes``, on node indices) over the components of ``nodes``."""
        inside = _members(picked.component, nodes)
        pairs = np.flatnonzero(picked.counted & inside[self.a])
        local = np.flatnonzero(inside)  # every node of a walked component is in one of its counted pairs
        position = np.cumsum(inside) - 1  # node -> its index in ``local``
        survivor, why = cluster_nodes(position[self.a[pairs]], position[self.b[pairs]], self.links[pairs],
                                      self.best_first(dedup, picked.eligible, local), mode)
        picked.survivor[local] = local[survivor]
        kind = np.full(len(local), -1, np.int8)
        # a kind not in KINDS: an error
        codes = why[col.DUP_KIND].replace_strict({k: i for i, k in enumerate(KINDS)}, return_dtype=pl.Int8)
        kind[why["node"].to_numpy()] = codes.to_numpy()
        picked.kind[local] = kind

    # --- what the decision and the pages read ----------------------------------------------------------
    def columns(self, picked: Picked) -> pl.DataFrame:
        """Per node: duplicate_of and dup_kind as the re-picked manifest would hold them."""
        kept = pl.Series(~picked.dropped())
        kinds = pl.Series(list(KINDS), dtype=pl.String).gather(np.maximum(picked.kind, 0))
        return pl.DataFrame({col.DUPLICATE_OF: self.ids.gather(picked.survivor).set(kept, None),
                             col.DUP_KIND: kinds.set(pl.Series(picked.kind < 0), None)})

    def nodes_of(self, rows: np.ndarray) -> np.ndarray:
        """Bool per node: its row is one of ``rows``."""
        at = np.searchsorted(self.rows, rows, sorter=self._by_row).clip(0, self.n - 1)
        found = self._by_row[at][self.rows[self._by_row[at]] == rows]
        out = np.zeros(self.n, bool)
        out[found] = True
        return out


def _components(n: int, a: np.ndarray, b: np.ndarray, counted: np.ndarray, last: Picked) -> np.ndarray:
    """Root node per node over the ``counted`` pairs: ``last``'s components joined by the pairs counted now and
    not then when no pair stopped counting (a loosened threshold), else found again from every counted pair."""
    if (last.counted & ~counted).any():
        return union_find(n, a[counted], b[counted])
    new = counted & ~last.counted
    if not new.any():
        return last.component
    return union_find(n, last.component[a[new]], last.component[b[new]])[last.component]  # roots: smallest nodes


def _members(component: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Bool per node: its component holds one of ``nodes`` (bool per node)."""
    hit = np.zeros(len(component), bool)
    hit[component[nodes]] = True
    return hit[component]


@dataclass(frozen=True)
class Repicked:
    """Rows as a setting's decision sees them: read from the stored parts, their duplicate columns replaced by
    ``cluster``'s table for the components holding them (one call per page of rows), as tune's re-picked
    parts (``pipelines.run.repick.part_frames``) hold them."""
    live: LiveSurvivors
    picked: Picked
    dedup: DedupConfig

    def attach(self, rows: pl.DataFrame, index: str) -> pl.DataFrame:
        """``rows`` (stored columns, their manifest row in column ``index``) with re-picked duplicate columns."""
        table = self.live.duplicates(self.picked, self.live.nodes_of(rows[index].to_numpy()), self.dedup)
        gone = [c for c in (*DUP_COLUMNS, *repick.EXPORT_COLUMNS) if c in rows.columns]
        return join_duplicates(rows.drop(gone).lazy(), table).collect()
