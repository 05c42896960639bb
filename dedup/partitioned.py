"""The dedup phase as partitioned tasks: shuffles by key, pairs per task, components, survivors per group.

The driver only plans: it sizes each shuffle from Parquet footers and task results, trains IVF
quantizers on a sample, and hands lists of independent task arguments to ``tasks`` (a Ray map in
``pipelines.run.tasks``; a plain loop in the driver when ``dedup.partitions.enabled`` is false, and in
tests). Every task reads and writes its own bucket files,
so memory per process follows ``dedup.partitions.bytes_per_bucket``, never the run; a shuffle's map
tasks each read a batch of input files of about ``bytes_per_map_task`` (``Plan.batches``). The result equals
``support.dedup_reference.run_dedup`` (the one-process reference, for tests and bench): same pairs, clusters
and survivors. The pair
finders, one per detector, are ``dedup.finders``; this module runs them, then components and survivors.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dedup import components as cc
from dedup import giant
from dedup import groups as grouping
from dedup import shuffle
from dedup.cluster import DUPLICATES_SCHEMA
from dedup.config import DedupConfig
from dedup.finders import FINDERS, KEY_BYTES, require
from dedup.plan import Plan, Tasks, local_tasks
from dedup.survivors import ELIGIBLE, centroid_dir, centroid_files, centroid_path, eligible_path, keep_order
from manifests import schema as col
from manifests.io import write_parquet
from manifests.layout import RunLayout

def run_partitioned(config: DedupConfig, layout: RunLayout, eligible: pl.DataFrame | None = None,
                    tasks: Tasks = local_tasks) -> dict:
    """Write dedup/pairs/ and dedup/duplicates/ (part files); with no detector enabled, write nothing.

    The keep policy ranks first the rows that pass every other rule: ``eligible`` as one frame, or,
    when None, the per-unit files of ``RunLayout.dedup_eligible_dir`` if any (written by eligibility tasks,
    ``pipelines.run.decide_tasks.eligible_unit``).
    """
    for path in (layout.pairs_dir, layout.duplicates_dir, centroid_dir(layout)):
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.pairs, layout.duplicates, eligible_path(layout), centroid_path(layout)):
        path.unlink(missing_ok=True)  # a one-process run's outputs must not shadow these
    detectors = config.enabled_detectors()
    if not detectors:
        return {"detectors": []}
    plan = Plan(config, layout, tasks)
    shutil.rmtree(plan.work, ignore_errors=True)
    if eligible is not None:
        write_parquet(eligible.select(col.SAMPLE_ID, ELIGIBLE).to_arrow(), eligible_path(layout))
    if "pixel_hash" in detectors:  # fail before any work, not after the other detectors ran
        require(col.PIXEL_HASH, layout.score_files())
    stats = {}
    try:
        scored = bool(layout.score_files())  # none when no image was staged (every download failed)
        for name in detectors:
            start = time.perf_counter()
            pairs = FINDERS[name](plan) if scored or name == "sha256" else 0
            stats[name] = {"pairs": pairs, "wall_s": round(time.perf_counter() - start, 3)}
        start = time.perf_counter()
        clusters = recluster_partitioned(config, layout, tasks, keep_work=True)
        clusters["clusters_wall_s"] = round(time.perf_counter() - start, 3)
        shuffled, files = _shuffled_bytes(plan.work), _shuffled_files(plan.work)
    finally:
        shutil.rmtree(plan.work, ignore_errors=True)
    return {"detectors": detectors, "pairs": stats, **clusters, "shuffled_bytes": shuffled, "shuffled_files": files,
            "shuffle_files_written": {**plan.written, **clusters.pop("shuffle_files_written")}}


def _eligible_files(layout: RunLayout) -> list[Path]:
    if eligible_path(layout).exists():
        return [eligible_path(layout)]
    return sorted(layout.dedup_eligible_dir.glob("*.parquet"))


def _shuffled_bytes(work: Path) -> dict[str, int]:
    """Bytes of data files left in each shuffle directory (what a cluster moves between tasks)."""
    dirs = sorted(d for d in work.iterdir() if d.is_dir()) if work.exists() else []
    return {d.name: shuffle.stored_bytes(d) for d in dirs}


def _shuffled_files(work: Path) -> dict[str, int]:
    """Data files left in each shuffle directory: a filesystem's (or object store's) cost of a shuffle."""
    dirs = sorted(d for d in work.iterdir() if d.is_dir()) if work.exists() else []
    return {d.name: len(shuffle.data_files(d)) for d in dirs}


# --- clusters and survivors -----------------------------------------------------------------------

@dataclass(frozen=True)
class Survivors:
    """Where a re-clustering writes: the duplicates part files (``out/UNIT/part-G.parquet``), its shuffle
    work directory, and the eligibility files it ranks by (None: ``dedup/eligible/``)."""
    out: Path
    work: Path
    eligible: list[Path] | None = None


def recluster_partitioned(config: DedupConfig, layout: RunLayout, tasks: Tasks = local_tasks,
                          keep_work: bool = False, into: Survivors | None = None) -> dict:
    """dedup/pairs/ + keep-policy scores -> dedup/duplicates/ (or ``into.out``) with ``config``'s thresholds
    and keep policy."""
    into = into or Survivors(layout.duplicates_dir, layout.dedup_work)
    try:
        return _recluster(config, layout, tasks, into)
    finally:
        if not keep_work:
            shutil.rmtree(into.work, ignore_errors=True)


def _recluster(config: DedupConfig, layout: RunLayout, tasks: Tasks, into: Survivors) -> dict:
    shutil.rmtree(into.out, ignore_errors=True)
    into.out.mkdir(parents=True)
    plan = Plan(config, layout, tasks, into.work)
    pair_files = sorted(layout.pairs_dir.glob("*.parquet")) if layout.pairs_dir.exists() else []
    labels, n_labels, rounds = components(plan, pair_files)
    order = keep_order(config)
    eligible = _eligible_files(layout) if into.eligible is None else into.eligible
    scores, columns = plan.fresh("keys"), _score_columns(layout, order, eligible)
    # scores are joined to labels bucket by bucket: the same count (components() sizes it for both)
    buckets, groups = plan.cc_buckets, plan.buckets(n_labels, 2 * KEY_BYTES)
    sources = {grouping.RESOLUTION_SOURCE: layout.staged_row_files(),
               grouping.ELIGIBLE_SOURCE: eligible,
               grouping.SCORES_SOURCE: layout.score_files(),
               grouping.CENTROIDS_SOURCE: centroid_files(centroid_path(layout))}
    plan.each(grouping.shuffle_scores, [(batch, kind, list(columns[kind]), buckets, scores, f"{i:05d}")
                                         for kind in columns
                                         for i, batch in enumerate(plan.batches(sources[kind], KEY_BYTES))])
    members, routed = plan.fresh("members"), plan.fresh("group-pairs")
    giant = _giant(plan, labels, n_labels)
    plan.each(grouping.route_members, [(labels, scores, b, columns, groups, members, giant)
                                       for b in range(plan.cc_buckets)])
    plan.each(grouping.route_pairs, [(plan.work / "pairs-by-a", labels, b, groups, routed, giant)
                                      for b in range(plan.cc_buckets)])
    found = plan.each(grouping.keep_group, [(routed, members, g, config.thresholds(), order, config.keep.mode,
                                              into.out) for g in range(groups)])
    if giant is not None:
        types = {c: t for kind in columns.values() for c, t in kind.items()}
        found.append(decide_giant(plan, giant, {c: types[c] for c in order if c in types}, into.out))
    if not any(into.out.rglob("*.parquet")):  # readers always find the table and its columns
        write_parquet(pl.DataFrame(schema=DUPLICATES_SCHEMA).to_arrow(), into.out / "_" / "part-00000.parquet")
    return {**_summary(found), "component_rounds": rounds, "shuffle_files_written": plan.written,
            "giant_components": len(giant.labels) if giant else 0,
            "giant_rounds": found[-1]["rounds"] if giant else 0}


def _giant(plan: Plan, labels: Path, n_labels: int) -> grouping.Giant | None:
    """The components over ``max_component_rows`` (greedy mode), or None. The driver holds their labels
    only: at most clustered rows / cap of them."""
    cap = plan.config.partitions.max_component_rows
    if plan.config.keep.mode != "greedy" or n_labels <= cap:
        return None
    sizes = plan.fresh("component-sizes")
    plan.each(grouping.component_sizes, [(labels, b, plan.cc_buckets, sizes) for b in range(plan.cc_buckets)])
    large: dict[str, int] = {}
    for part in plan.each(grouping.large_components, [(sizes, b, cap) for b in range(plan.cc_buckets)]):
        large.update(part)
    if not large:
        return None
    buckets = giant.bucket_count(sum(large.values()), cap, plan.buckets(sum(large.values()), 2 * KEY_BYTES))
    return grouping.Giant(tuple(sorted(large)), buckets, plan.fresh("giant-members"), plan.fresh("giant-pairs"))


def decide_giant(plan: Plan, found: grouping.Giant, keys: dict[str, pl.DataType], out: Path) -> dict:
    """The giant components' duplicates rows (``dedup.giant``): classes by star rounds, hub links, then
    greedy rounds until no sample is undecided; ``keys``: the keep-order columns present, best first."""
    b, every = found.buckets, range(found.buckets)
    state, asked_n, links, asked_l, rows, link_rows = _giant_graph(plan, found, keys)
    state, blockers, rounds = _greedy_rounds(plan, b, keys, state, asked_n, links, asked_l)
    sent, survivors = plan.fresh("giant-final"), plan.fresh("giant-survivors")
    plan.each(giant.spread, [(blockers, asked_n, i, giant.blocker_schema(keys), b, sent) for i in every])
    parts = plan.each(giant.finish, [(state, sent, i, keys, b, out, survivors) for i in every])
    clusters = sum(plan.each(giant.count_clusters, [(survivors, i) for i in every]))
    by_kind: dict[str, int] = {}
    for part in parts:
        for kind, n in part["by_kind"].items():
            by_kind[kind] = by_kind.get(kind, 0) + n
    return {"rows": sum(rows), "duplicates": sum(p["duplicates"] for p in parts), "clusters": clusters,
            "by_kind": by_kind, "rounds": rounds, "task_members": rows, "task_links": link_rows}


def _giant_graph(plan: Plan, found: grouping.Giant, keys: dict[str, pl.DataType]) -> tuple:
    """Node states (with their byte, image and caption classes), hub links, and who asked for which hub;
    the samples and the links each task held."""
    b, every = found.buckets, range(found.buckets)
    edges = plan.fresh("giant-class-edges-0")
    plan.each(giant.class_edges, [(found.pairs, i, b, edges) for i in every])
    class_labels, _, _ = star_rounds(plan, edges, b, "giant-class-")
    classes, state, asked_n = plan.fresh("giant-classes"), plan.fresh("giant-nodes"), plan.fresh("giant-asked-nodes")
    plan.each(giant.class_labels, [(class_labels, i, b, classes) for i in every])
    rows = plan.each(giant.nodes, [(found.members, classes, i, keys, b, state, asked_n) for i in every])
    half, raw = plan.fresh("giant-half-links"), plan.fresh("giant-raw-links")
    plan.each(giant.half_links, [(found.pairs, state, i, keys, b, half) for i in every])
    plan.each(giant.links, [(half, state, i, keys, b, raw) for i in every])
    links, asked_l = plan.fresh("giant-links"), plan.fresh("giant-asked-links")
    link_rows = plan.each(giant.best_links, [(raw, i, b, links, asked_l) for i in every])
    return state, asked_n, links, asked_l, rows, link_rows


def _greedy_rounds(plan: Plan, b: int, keys: dict[str, pl.DataType], state: Path, asked_n: Path, links: Path,
                   asked_l: Path) -> tuple[Path, Path, int]:
    """Rounds of ``dedup.giant`` steps until no node is undecided -> the final node states, each hub's
    best blocker, the rounds. A round's directories replace the ones of the round before last."""
    offer_schema, blocker_schema = {giant.HUB: pl.String, giant.V: pl.String, **keys}, giant.blocker_schema(keys)
    blockers, drops, rounds, names, every = None, None, 0, list(keys), range(b)
    while True:
        opened, offers = plan.fresh("giant-nodes-a"), plan.fresh(f"giant-offers-{rounds % 2}")
        if sum(plan.each(giant.offer, [(state, drops, i, keys, b, opened, offers) for i in every])) == 0:
            return opened, blockers, rounds
        rounds += 1
        sent, best, linked, won, kept, sent_kept, blocked, now, drops = (
            plan.fresh(f"giant-{name}-{rounds % 2}")
            for name in ("sent", "best", "linked", "won", "kept", "sent-kept", "blocked", "blockers", "drops"))
        plan.each(giant.spread, [(offers, asked_l, i, offer_schema, b, sent, names, best) for i in every])
        plan.each(giant.across, [(links, sent, i, offer_schema, names, b, linked, False) for i in every])
        plan.each(giant.winners, [(best, linked, i, keys, b, won) for i in every])
        state = plan.fresh("giant-nodes-b")
        plan.each(giant.keep, [(opened, won, i, keys, b, state, kept) for i in every])
        plan.each(giant.spread, [(kept, asked_l, i, blocker_schema, b, sent_kept) for i in every])
        plan.each(giant.across, [(links, sent_kept, i, blocker_schema, names, b, blocked, True) for i in every])
        plan.each(giant.block, [(blockers, kept, blocked, asked_n, i, keys, b, now, drops) for i in every])
        blockers = now


def components(plan: Plan, pair_files: list[Path]) -> tuple[Path, int, int]:
    """Labels (sample_id -> cluster_id) of every sample in a counted pair, bucketed by sample_id;
    their count; the number of large-star/small-star rounds it took."""
    by_edges = plan.buckets(2 * sum(plan.file_rows(f) for f in pair_files), KEY_BYTES)
    plan.cc_buckets = buckets = max(by_edges, plan.buckets(plan.rows, KEY_BYTES))  # labels meet every row's scores
    edges, by_a = plan.fresh("edges-0"), plan.fresh("pairs-by-a")
    plan.each(cc.seed_edges, [(batch, plan.config.thresholds(), buckets, edges, by_a, f"{i:05d}")
                              for i, batch in enumerate(plan.batches(pair_files, 3 * KEY_BYTES))])
    return star_rounds(plan, edges, buckets)


def star_rounds(plan: Plan, edges: Path, buckets: int, prefix: str = "") -> tuple[Path, int, int]:
    """Large-star/small-star rounds from seeded ``edges`` (both ways, by first node) until nothing changes
    -> each node's label (its component's smallest node), by node; their count; the rounds."""
    previous, step = None, 0
    while True:
        large = plan.fresh(f"{prefix}edges-{step + 1}")
        fingerprints = plan.each(cc.large_star, [(edges, b, buckets, large) for b in range(buckets)])
        if cc.converged(previous, fingerprints):
            break
        small = plan.fresh(f"{prefix}edges-{step + 2}")
        plan.each(cc.small_star, [(large, b, buckets, small) for b in range(buckets)])
        shutil.rmtree(edges, ignore_errors=True)
        shutil.rmtree(large, ignore_errors=True)
        edges, previous, step = small, fingerprints, step + 2
    labels = plan.fresh(f"{prefix}labels")
    n = sum(plan.each(cc.labels, [(edges, b, labels) for b in range(buckets)]))
    return labels, n, step // 2


def _score_columns(layout: RunLayout, order: tuple[str, ...], eligible: list[Path]) -> dict[str, dict[str, pl.DataType]]:
    """Source kind -> {keep-policy column: dtype} for the columns of ``order`` that the run has."""
    out: dict[str, dict[str, pl.DataType]] = {}
    if layout.staged_row_files():  # always: it carries each sample's unit
        out[grouping.RESOLUTION_SOURCE] = {"resolution": pl.Int64, grouping.UNIT: pl.String}
    if ELIGIBLE in order and eligible:
        out[grouping.ELIGIBLE_SOURCE] = {ELIGIBLE: pl.Boolean}
    types: dict[str, pl.DataType] = {}
    for f in layout.score_files():
        schema = pl.read_parquet_schema(f)
        types.update({c: schema[c] for c in order if c in schema and c not in col.ARTEFACT_COLUMNS})
    if types:
        out[grouping.SCORES_SOURCE] = {c: types[c] for c in order if c in types}
    if col.CENTROID_DISTANCE in order and centroid_files(centroid_path(layout)):
        out[grouping.CENTROIDS_SOURCE] = {col.CENTROID_DISTANCE: pl.Float32}
    return out


def _summary(found: list[dict]) -> dict:
    by_kind: dict[str, int] = {}
    for part in found:
        for kind, n in part.get("by_kind", {}).items():
            by_kind[kind] = by_kind.get(kind, 0) + n
    return {"clusters": sum(p.get("clusters", 0) for p in found),
            "kept_in_clusters": sum(p["rows"] - p["duplicates"] for p in found),
            "duplicates": sum(p["duplicates"] for p in found), "by_kind": dict(sorted(by_kind.items()))}
