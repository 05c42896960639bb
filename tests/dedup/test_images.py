"""Image near-duplicates on real photos, exact duplicates, and the whole phase across shard splits."""

from __future__ import annotations

import polars as pl

from dedup.config import DedupConfig
from dedup.keep import union_find
from support.dedup_reference import recluster, run_dedup
from manifests import schema as col
from tests.dedup.runs import write_run

PHASH_ONLY = DedupConfig.model_validate({"phash": {"enabled": True}})
ALL = DedupConfig.model_validate({"exact": {"enabled": True}, "phash": {"enabled": True},
                                  "minhash": {"enabled": True}})


def photo_pairs(layout, items) -> tuple[set, dict]:
    photo = {i.sample_id: i.photo for i in items}
    pairs = pl.read_parquet(layout.pairs)
    return {(photo[a], photo[b]) for a, b in pairs.select("sample_a", "sample_b").iter_rows()}, photo


def components(layout, config: DedupConfig) -> dict[str, int]:
    """sample_id -> its connected component of the counted pairs."""
    counted = pl.read_parquet(layout.pairs).filter(
        pl.col("similarity") >= pl.col("detector").replace_strict(config.thresholds()) - 1e-6)
    ids = pl.concat([counted["sample_a"], counted["sample_b"]]).unique().sort()
    roots = union_find(len(ids), ids.search_sorted(counted["sample_a"]).to_numpy(),
                       ids.search_sorted(counted["sample_b"]).to_numpy())
    return dict(zip(ids.to_list(), roots.tolist()))


def test_phash_finds_planted_pairs_without_merging_distinct_photos(tmp_path, near_dup_set):
    layout = write_run(tmp_path, near_dup_set, PHASH_ONLY, shards=2, seed=0)
    run_dedup(PHASH_ONLY, layout)
    linked, photo = photo_pairs(layout, near_dup_set)
    assert all(a == b for a, b in linked), "a pHash pair joins two different photos"
    clusters = pl.read_parquet(layout.duplicates).with_columns(
        pl.col(col.SAMPLE_ID).replace_strict(photo).alias("photo"))
    assert (clusters.group_by(col.CLUSTER_ID).agg(pl.col("photo").n_unique())["photo"] == 1).all()
    # Every planted copy must be linked to its original by a chain of counted pairs (a connected
    # component): a cluster_id is a survivor's group, and greedy may keep a copy beside its original's group.
    cluster_of = components(layout, PHASH_ONLY)
    originals = {i.photo: i.sample_id for i in near_dup_set if i.edit == "original"}
    found = {}
    for item in near_dup_set:
        if item.edit != "original":
            same = cluster_of.get(item.sample_id) == cluster_of.get(originals[item.photo]) is not None
            found.setdefault(item.edit, []).append(same)
    recall = {edit: sum(hits) / len(hits) for edit, hits in found.items()}
    print(recall)
    for edit in ("copy", "png", "rescale", "jpeg", "flip", "jitter"):
        assert recall[edit] == 1.0, recall
    assert sum(sum(h) for h in found.values()) / sum(len(h) for h in found.values()) >= 0.85, recall


def test_exact_duplicates_by_bytes_and_pixels(tmp_path, near_dup_set):
    config = DedupConfig.model_validate({"exact": {"enabled": True}})
    layout = write_run(tmp_path, near_dup_set, config, shards=1, seed=0)
    run_dedup(config, layout)
    dups = pl.read_parquet(layout.duplicates).filter(pl.col(col.DUPLICATE_OF).is_not_null())
    edits = {i.sample_id: i.edit for i in near_dup_set}
    dropped = sorted(edits[s] for s in dups[col.SAMPLE_ID])
    # original, copy (same bytes) and png (same pixels) form one cluster per photo; one of them is kept.
    assert set(dropped) <= {"copy", "png", "original"}
    assert len(dropped) == 2 * len({i.photo for i in near_dup_set})
    assert set(dups[col.DUP_KIND]) == {"exact"}


def test_same_result_whatever_the_shard_split(tmp_path, near_dup_set):
    outputs = []
    for shards, seed in ((1, 0), (3, 1), (7, 2)):
        layout = write_run(tmp_path / f"split{shards}", near_dup_set, ALL, shards=shards, seed=seed)
        stats = run_dedup(ALL, layout)
        outputs.append((pl.read_parquet(layout.pairs), pl.read_parquet(layout.duplicates), stats["duplicates"]))
    for pairs, dups, count in outputs[1:]:
        assert pairs.equals(outputs[0][0]) and dups.equals(outputs[0][1]) and count == outputs[0][2]
    assert {"exact", "image", "caption"} <= set(outputs[0][1][col.DUP_KIND].drop_nulls())


def test_recluster_from_stored_pairs_changes_only_what_the_thresholds_change(tmp_path, near_dup_set):
    loose = DedupConfig.model_validate({"phash": {"enabled": True, "store_threshold": 0.75}})
    layout = write_run(tmp_path, near_dup_set, loose, shards=2, seed=3)
    first = run_dedup(loose, layout)
    again = pl.read_parquet(layout.duplicates)
    stricter = DedupConfig.model_validate({"phash": {"enabled": True, "threshold": 0.95, "store_threshold": 0.75}})
    assert recluster(stricter, layout)["duplicates"] < first["duplicates"]
    assert recluster(loose, layout)["duplicates"] == first["duplicates"]
    assert pl.read_parquet(layout.duplicates).equals(again)
