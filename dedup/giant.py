"""Survivors of components too large for one task: the greedy keep policy in rounds of bucketed joins.

``dedup.groups`` decides a whole component in one task. A component of more than
``dedup.partitions.max_component_rows`` samples (a mass-copied picture, a long chain of edits) is
decided here instead, by tasks that each hold one hash bucket of its samples, hubs or links.

The greedy policy of ``dedup.keep`` is a sequential walk, best first, over a conflict graph: two
samples conflict when they share an image class or a caption class (``keep.Classes``), or when an
image link joins their image classes or a caption link their caption classes. Each sample belongs to
two *hubs*, its image class ``i:ROOT`` and its caption class ``c:ROOT``; *links* join hubs of one
kind. The walk's result is the lexicographically first maximal independent set, which rounds give
exactly (Blelloch, Fineman and Shun, "Greedy sequential maximal independent set and matching are
parallel on average", SPAA 2012): keep every undecided sample that beats every undecided sample it
conflicts with, drop every sample that conflicts with a kept one, repeat. In hub terms a sample is
kept when it is the *winner* of both its hubs: the hub's best undecided member, better than every
undecided member of a linked hub. A dropped sample's survivor is, as in the walk, the best kept
sample it conflicts with: the best *blocker* of its two hubs over all rounds.

Every step is a task per bucket; a hub's rows reach a bucket of nodes or links only through the
buckets that asked for it (*interest* rows, one per hub and bucket), so a hub of a million members
or links is one row per bucket, never a million rows in one task. Pure: files in, files out, no Ray.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from dedup.cluster import DETECTOR, DUPLICATES_SCHEMA, KEPT_SAMPLE_ID, PAIRS_SCHEMA, SAMPLE_A, SAMPLE_B, SIMILARITY
from dedup.keep import MINHASH, PIXELS, SAME_SIGNATURE, SHA256
from dedup.shuffle import scan_bucket, write_bucket, write_buckets
from manifests import schema as col
from manifests.io import write_parquet
from manifests.schema import DupKind

V, HUB, TO, UNIT = "v", "h", "to", "unit"
IMAGE_HUB, CAPTION_HUB, BYTES = "hi", "hc", "hs"  # a node's image class, caption class and byte class
STATE, UNDECIDED, KEPT, DROPPED = "state", "u", "k", "d"
REL = {"rel_detector": pl.String, "rel_kind": pl.String, SIMILARITY: pl.Float32, "rel_rank": pl.Int8}
SAME = "same"  # rel_detector of a blocker in the hub itself (exact or identical caption), resolved at the end
_RANK = {DupKind.EXACT: 0, DupKind.IMAGE: 1, DupKind.CAPTION: 2, DupKind.SEMANTIC: 3}  # as cluster._KIND_RANK


def bucket_count(rows: int, cap: int, least: int) -> int:
    """Buckets for ``rows`` rows of giant components: a bucket holds about a quarter of ``cap`` rows."""
    return max(least, math.ceil(4 * rows / cap))


# --- keys: the keep order as columns ----------------------------------------------------------------

def _best(frame: pl.DataFrame, by: list[str], keys: list[str]) -> pl.DataFrame:
    """Per ``by``: the row of the best node (``V``) by the keep order, as ``cluster._ranked`` ranks:
    highest of each key (nulls last), then smallest sample_id."""
    ranked = frame.sort([*keys, V], descending=[True] * len(keys) + [False], nulls_last=True)
    return ranked.group_by(by, maintain_order=True).first()


def _best_link(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Per ``by``: the strongest relation, as ``cluster._best``: exact, image, caption, semantic, then similarity."""
    ranked = frame.sort([*by, "rel_rank", SIMILARITY, "rel_detector"],
                        descending=[False] * len(by) + [False, True, False])
    return ranked.group_by(by, maintain_order=True).first()


# --- before the rounds: classes, nodes, links -------------------------------------------------------

def class_edges(pairs: Path, bucket: int, buckets: int, out: Path) -> int:
    """Map task: one bucket of giant pairs -> the edges of the byte (``s:``), image (``i:``) and caption
    (``c:``) classes, both ways, for ``dedup.components`` star rounds (a class's label: its smallest id)."""
    frame = scan_bucket(pairs, bucket, PAIRS_SCHEMA).collect()
    kinds = [(pl.col(col.DUP_KIND) == DupKind.EXACT, "i:"), (pl.col(DETECTOR) == SHA256, "s:"),
             ((pl.col(DETECTOR) == MINHASH) & (pl.col(SIMILARITY) >= SAME_SIGNATURE), "c:")]
    edges = pl.concat([frame.filter(keep).select((prefix + pl.col(x)).alias("u"), (prefix + pl.col(y)).alias("v"))
                       for keep, prefix in kinds for x, y in ((SAMPLE_A, SAMPLE_B), (SAMPLE_B, SAMPLE_A))])
    return write_buckets(edges, pl.col("u"), buckets, out, f"{bucket:05d}")


def class_labels(labels: Path, bucket: int, buckets: int, out: Path) -> int:
    """Map task: star-round labels of ``s:/i:/c:`` nodes -> (sample_id, class kind, label) by sample_id."""
    frame = scan_bucket(labels, bucket, {col.SAMPLE_ID: pl.String, col.CLUSTER_ID: pl.String}).collect()
    node = pl.col(col.SAMPLE_ID)
    rows = frame.select(node.str.slice(2).alias(V), node.str.slice(0, 1).alias("kind"), pl.col(col.CLUSTER_ID).alias("label"))
    return write_buckets(rows, pl.col(V), buckets, out, f"{bucket:05d}")


def nodes(members: Path, classes: Path, bucket: int, keys: dict[str, pl.DataType], buckets: int, out: Path,
          interest: Path) -> int:
    """Task: one bucket of giant members -> its node state (hubs, byte class, keys, unit, undecided), and
    an interest row per hub it holds (the hub's results come back to this bucket by it)."""
    frame = scan_bucket(members, bucket, {col.SAMPLE_ID: pl.String, **keys, UNIT: pl.String}).collect()
    labels = scan_bucket(classes, bucket, {V: pl.String, "kind": pl.String, "label": pl.String}).collect()
    frame = frame.rename({col.SAMPLE_ID: V}).unique(V, keep="first", maintain_order=True).with_columns(
        [pl.col(k).fill_nan(None) for k, t in keys.items() if t.is_float()])  # NaN ranks last, as in cluster()
    for kind, name in (("i", IMAGE_HUB), ("c", CAPTION_HUB), ("s", BYTES)):
        of = labels.filter(pl.col("kind") == kind).select(V, pl.col("label").alias(name))
        frame = frame.join(of, on=V, how="left").with_columns(pl.col(name).fill_null(kind + ":" + pl.col(V)))
    frame = frame.with_columns(pl.lit(UNDECIDED).alias(STATE))
    write_bucket(frame, bucket, out, f"{bucket:05d}")
    hubs = pl.concat([frame.select(pl.col(h).alias(HUB), pl.col(V).alias(TO)) for h in (IMAGE_HUB, CAPTION_HUB)])
    write_buckets(hubs.group_by(HUB).agg(pl.col(TO).min()), pl.col(HUB), buckets, interest, f"{bucket:05d}")
    return frame.height


def node_schema(keys: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    return {V: pl.String, **keys, UNIT: pl.String, IMAGE_HUB: pl.String, CAPTION_HUB: pl.String, BYTES: pl.String,
            STATE: pl.String}


def half_links(pairs: Path, state: Path, bucket: int, keys: dict[str, pl.DataType], buckets: int, out: Path) -> int:
    """Join task: giant pairs of this sample_a bucket + sample_a's hubs -> by sample_b."""
    frame = scan_bucket(pairs, bucket, PAIRS_SCHEMA).collect()
    hubs = scan_bucket(state, bucket, node_schema(keys)).select(V, IMAGE_HUB, CAPTION_HUB).collect()
    joined = frame.join(hubs.rename({IMAGE_HUB: "ia", CAPTION_HUB: "ca"}), left_on=SAMPLE_A, right_on=V)
    return write_buckets(joined, pl.col(SAMPLE_B), buckets, out, f"{bucket:05d}")


def links(half: Path, state: Path, bucket: int, keys: dict[str, pl.DataType], buckets: int, out: Path) -> int:
    """Join task: + sample_b's hubs -> hub links both ways (image links between image classes, caption links
    between caption classes), by the link (h, g)."""
    frame = scan_bucket(half, bucket, {**PAIRS_SCHEMA, "ia": pl.String, "ca": pl.String}).collect()
    hubs = scan_bucket(state, bucket, node_schema(keys)).select(V, IMAGE_HUB, CAPTION_HUB).collect()
    frame = frame.join(hubs.rename({IMAGE_HUB: "ib", CAPTION_HUB: "cb"}), left_on=SAMPLE_B, right_on=V)
    rel = [pl.col(DETECTOR).alias("rel_detector"), pl.col(col.DUP_KIND).alias("rel_kind"), pl.col(SIMILARITY),
           pl.col(col.DUP_KIND).replace_strict(_RANK, return_dtype=pl.Int8).alias("rel_rank")]
    image = frame.filter((pl.col(col.DUP_KIND) != DupKind.CAPTION) & (pl.col("ia") != pl.col("ib")))
    caption = frame.filter((pl.col(col.DUP_KIND) == DupKind.CAPTION) & (pl.col("ca") != pl.col("cb")))
    both = pl.concat([f.select(pl.col(x).alias(HUB), pl.col(y).alias("g"), *rel)
                      for f, (p, q) in ((image, ("ia", "ib")), (caption, ("ca", "cb"))) for x, y in ((p, q), (q, p))])
    return write_buckets(both, _link_key(), buckets, out, f"{bucket:05d}")


def _link_key() -> pl.Expr:
    return pl.concat_str([pl.col(HUB), pl.col("g")], separator="\x00")


LINK_SCHEMA = {HUB: pl.String, "g": pl.String, **REL}


def best_links(raw: Path, bucket: int, buckets: int, out: Path, interest: Path) -> int:
    """Reduce task: one link per hub pair (its strongest relation), and an interest row per hub it holds."""
    frame = _best_link(scan_bucket(raw, bucket, LINK_SCHEMA).collect(), [HUB, "g"])
    write_bucket(frame, bucket, out, f"{bucket:05d}")
    asks = frame.group_by(HUB).agg(_link_key().min().alias(TO))
    write_buckets(asks, pl.col(HUB), buckets, interest, f"{bucket:05d}")
    return frame.height


def _read(root: Path, bucket: int, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """One bucket with exactly ``schema``'s columns (a column no part has: null)."""
    frame = scan_bucket(root, bucket, schema).collect()
    return frame.select([(pl.col(n) if n in frame.columns else pl.lit(None)).cast(t).alias(n)
                         for n, t in schema.items()])


# --- one round ----------------------------------------------------------------------------------------
# node: apply drops, offer each hub its best undecided member -> hub: the hub's best, sent to its links
# -> link: each linked hub's best -> hub: the winner (best of its own and its linked hubs') -> node: kept
# when it wins both hubs -> hub: kept hubs sent to their links -> link: blockers of linked hubs -> hub:
# best blocker so far; newly blocked hubs sent to their nodes (the next round's first step drops them).

def offer(state: Path, drops: Path | None, bucket: int, keys: dict[str, pl.DataType], buckets: int,
          out: Path, offers: Path) -> int:
    """Node task: drop the undecided nodes with a newly blocked hub; each hub's best undecided member of
    this bucket -> by hub. Returns the undecided nodes left (0 everywhere: the rounds are done)."""
    frame = _read(state, bucket, node_schema(keys))
    if drops is not None:
        blocked = _read(drops, bucket, {HUB: pl.String}).unique()[HUB].implode()
        hit = (pl.col(STATE) == UNDECIDED) & (pl.col(IMAGE_HUB).is_in(blocked) | pl.col(CAPTION_HUB).is_in(blocked))
        frame = frame.with_columns(pl.when(hit).then(pl.lit(DROPPED)).otherwise(pl.col(STATE)).alias(STATE))
    write_bucket(frame, bucket, out, f"{bucket:05d}")
    open_ = frame.filter(pl.col(STATE) == UNDECIDED)
    bids = pl.concat([open_.select(pl.col(h).alias(HUB), V, *keys) for h in (IMAGE_HUB, CAPTION_HUB)])
    write_buckets(_best(bids, [HUB], list(keys)), pl.col(HUB), buckets, offers, f"{bucket:05d}")
    return open_.height


def spread(rows: Path, interest: Path, bucket: int, schema: dict[str, pl.DataType], buckets: int,
           out: Path, best_of: list[str] | None = None, keep: Path | None = None) -> int:
    """Hub task: this bucket's hub rows (``best_of``: keys, the best per hub first) -> every bucket that
    asked for the hub (its interest rows), by ``TO``; ``keep``: the hub rows also stay here."""
    frame = _read(rows, bucket, schema)
    if best_of is not None:
        frame = _best(frame, [HUB], best_of)
    if keep is not None:
        write_bucket(frame, bucket, keep, f"{bucket:05d}")
    asked = _read(interest, bucket, {HUB: pl.String, TO: pl.String})
    return write_buckets(frame.join(asked, on=HUB), pl.col(TO), buckets, out, f"{bucket:05d}")


def across(link_rows: Path, sent: Path, bucket: int, schema: dict[str, pl.DataType], keys: list[str],
           buckets: int, out: Path, relation: bool) -> int:
    """Link task: hub rows sent here -> the same rows for each linked hub ``g`` (the best per ``g``), by
    ``g``; ``relation``: with the link's relation in place of the row's."""
    frame = _read(sent, bucket, {**schema, TO: pl.String}).drop(TO)
    found = _read(link_rows, bucket, LINK_SCHEMA)
    if relation:
        frame = frame.drop(list(REL))
    else:
        found = found.select(HUB, "g")
    linked = frame.join(found, on=HUB).drop(HUB).rename({"g": HUB})
    return write_buckets(_best(linked, [HUB], keys), pl.col(HUB), buckets, out, f"{bucket:05d}")


def winners(best: Path, linked: Path, bucket: int, keys: dict[str, pl.DataType], buckets: int, out: Path) -> int:
    """Hub task: a hub's best undecided member wins when no linked hub has a better one -> by node."""
    schema = {HUB: pl.String, V: pl.String, **keys}
    own = _read(best, bucket, schema)
    top = _best(pl.concat([own, _read(linked, bucket, schema)]), [HUB], list(keys))
    won = own.join(top.select(HUB, pl.col(V).alias("top")), on=HUB).filter(pl.col(V) == pl.col("top"))
    return write_buckets(won.select(HUB, V), pl.col(V), buckets, out, f"{bucket:05d}")


def keep(state: Path, won: Path, bucket: int, keys: dict[str, pl.DataType], buckets: int, out: Path,
         kept: Path) -> int:
    """Node task: an undecided node that wins both its hubs is kept -> its hubs' blockers (itself, in
    the hub), by hub. Returns the nodes kept."""
    frame = _read(state, bucket, node_schema(keys))
    wins = _read(won, bucket, {HUB: pl.String, V: pl.String}).group_by(V).len()
    new = frame.join(wins.filter(pl.col("len") == 2), on=V, how="semi").filter(pl.col(STATE) == UNDECIDED)
    frame = frame.with_columns(pl.when(pl.col(V).is_in(new[V].implode())).then(pl.lit(KEPT)).otherwise(pl.col(STATE))
                               .alias(STATE))
    write_bucket(frame, bucket, out, f"{bucket:05d}")
    same = [pl.lit(SAME).alias("rel_detector"), pl.lit(None, pl.String).alias("rel_kind"),
            pl.lit(1.0, pl.Float32).alias(SIMILARITY)]
    rows = pl.concat([new.select(pl.col(h).alias(HUB), V, *keys, BYTES, *same, pl.lit(r, pl.Int8).alias("rel_rank"))
                      for h, r in ((IMAGE_HUB, _RANK[DupKind.EXACT]), (CAPTION_HUB, _RANK[DupKind.CAPTION]))])
    write_buckets(rows, pl.col(HUB), buckets, kept, f"{bucket:05d}")
    return new.height


def block(blockers: Path | None, kept: Path, linked: Path, interest: Path, bucket: int,
          keys: dict[str, pl.DataType], buckets: int, out: Path, drops: Path) -> int:
    """Hub task: this round's blockers (kept in the hub, or in a linked hub) + the best so far -> the best
    blocker of each hub; the hubs blocked for the first time -> the buckets of their nodes, by ``TO``."""
    schema = blocker_schema(keys)
    before = _read(blockers, bucket, schema) if blockers is not None else pl.DataFrame(schema=schema)
    now = pl.concat([_read(kept, bucket, schema), _read(linked, bucket, schema)])
    write_bucket(_best(pl.concat([before, now]), [HUB], list(keys)), bucket, out, f"{bucket:05d}")
    fresh = now.select(HUB).unique().join(before.select(HUB), on=HUB, how="anti")
    asked = _read(interest, bucket, {HUB: pl.String, TO: pl.String})
    return write_buckets(fresh.join(asked, on=HUB), pl.col(TO), buckets, drops, f"{bucket:05d}")


def blocker_schema(keys: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
    return {HUB: pl.String, V: pl.String, **keys, BYTES: pl.String, **REL}


# --- after the rounds ---------------------------------------------------------------------------------

def finish(state: Path, sent: Path, bucket: int, keys: dict[str, pl.DataType], buckets: int, out: Path,
           survivors: Path) -> dict:
    """Node task: each node's duplicates row (``DUPLICATES_SCHEMA``), written per ingest unit as
    ``out/UNIT/giant-BUCKET.parquet``: a dropped node duplicates the best blocker of its two hubs, with
    the strongest relation to it; the survivors of dropped nodes -> by survivor, to count the clusters."""
    frame = _read(state, bucket, node_schema(keys))
    found = _read(sent, bucket, {**blocker_schema(keys), TO: pl.String}).drop(TO).rename({V: "k", BYTES: "ks"})
    dropped = frame.filter(pl.col(STATE) == DROPPED)
    candidates = pl.concat([dropped.select(V, BYTES, pl.col(h).alias(HUB)).join(found, on=HUB)
                            for h in (IMAGE_HUB, CAPTION_HUB)])
    survivor = _best(candidates.rename({V: "node", "k": V}), ["node"], list(keys)).select("node", pl.col(V).alias("k"))
    why = candidates.join(survivor, left_on=[V, "k"], right_on=["node", "k"])
    same_bytes = pl.when(pl.col(BYTES) == pl.col("ks")).then(pl.lit(SHA256)).otherwise(pl.lit(PIXELS))
    why = why.with_columns(
        pl.when(pl.col("rel_detector") != SAME).then(pl.col("rel_detector"))
        .when(pl.col("rel_rank") == _RANK[DupKind.EXACT]).then(same_bytes).otherwise(pl.lit(MINHASH))
        .alias("rel_detector"),
        pl.when(pl.col("rel_detector") != SAME).then(pl.col("rel_kind"))
        .when(pl.col("rel_rank") == _RANK[DupKind.EXACT]).then(pl.lit(DupKind.EXACT)).otherwise(pl.lit(DupKind.CAPTION))
        .alias("rel_kind"))
    why = _best_link(why, [V]).select(V, "k", pl.col("rel_kind").alias(col.DUP_KIND), SIMILARITY,
                                      pl.col("rel_detector").alias(DETECTOR))
    rows = frame.select(V, UNIT).join(why, on=V, how="left").select(
        pl.col(V).alias(col.SAMPLE_ID), pl.col("k").fill_null(pl.col(V)).alias(col.CLUSTER_ID),
        pl.col("k").fill_null(pl.col(V)).alias(KEPT_SAMPLE_ID), pl.col("k").alias(col.DUPLICATE_OF),
        col.DUP_KIND, SIMILARITY, DETECTOR, UNIT)
    for (unit,), part in rows.with_columns(pl.col(UNIT).fill_null("_")).partition_by(UNIT, as_dict=True).items():
        write_parquet(part.drop(UNIT).select(list(DUPLICATES_SCHEMA)).cast(DUPLICATES_SCHEMA).sort(col.SAMPLE_ID)
                      .to_arrow(), out / str(unit) / f"giant-{bucket:05d}.parquet")
    lost = dropped.join(survivor, left_on=V, right_on="node", how="anti").height
    if lost:  # a dropped node always has a blocker: a broken round, never a result to write
        raise RuntimeError(f"giant bucket {bucket}: {lost} dropped samples without a survivor")
    write_buckets(why.select(pl.col("k").alias(V)).unique(), pl.col(V), buckets, survivors, f"{bucket:05d}")
    dups = why.height
    return {"rows": frame.height, "duplicates": dups, "by_kind": dict(why.group_by(col.DUP_KIND).len().iter_rows())}


def count_clusters(survivors: Path, bucket: int) -> int:
    """Reduce task: the survivors with at least one dropped sample in this bucket (each survivor in one bucket)."""
    return _read(survivors, bucket, {V: pl.String})[V].n_unique()
