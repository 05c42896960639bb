"""The column contract: schema round-trip through Parquet, conform() and the WebDataset tar helpers."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import schema as col
from manifests.schema import MANIFEST_SCHEMA, conform
from manifests.shards import iter_tar, split_member, write_tar


def _row(**overrides) -> dict:
    row = {name: None for name in MANIFEST_SCHEMA.names}
    row.update({col.SAMPLE_ID: "000000000", col.STATUS: "success", col.KEEP: True, col.REJECT_REASONS: []})
    row.update(overrides)
    return row


def test_manifest_schema_round_trips_through_parquet(tmp_path):
    rows = [_row(), _row(sample_id="000000001", keep=False, reject_reasons=["nsfw", "aesthetic_low"],
                        clip_score=0.31, nsfw_prob=0.9, width=256, sha256="ab" * 32)]
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    pq.write_table(table, tmp_path / "m.parquet")
    back = pq.read_table(tmp_path / "m.parquet")
    assert back.schema.equals(MANIFEST_SCHEMA, check_metadata=False)
    assert back.to_pylist() == table.to_pylist()


def test_conform_orders_types_and_fills_missing_columns():
    table = pa.table({col.KEEP: [True], col.SAMPLE_ID: ["k"], col.STATUS: ["success"],
                      col.REJECT_REASONS: [[]], col.WIDTH: pa.array([3], pa.int64()), "extra_score": [1.5]})
    out = conform(table)
    assert out.schema.names[: len(MANIFEST_SCHEMA)] == MANIFEST_SCHEMA.names
    assert out.schema.field(col.WIDTH).type == pa.int32()
    assert out.column(col.CLIP_SCORE).null_count == 1
    assert out.column("extra_score").to_pylist() == [1.5]  # a column outside the contract is kept


def test_conform_refuses_a_table_without_required_columns():
    with pytest.raises(ValueError, match="sample_id"):
        conform(pa.table({col.STATUS: ["success"]}))


def test_columns_and_statuses_are_unique():
    assert len(set(MANIFEST_SCHEMA.names)) == len(MANIFEST_SCHEMA.names)
    assert len(set(col.Status.ALL)) == len(col.Status.ALL)


def test_tar_round_trip_keeps_keys_members_and_order(tmp_path):
    samples = [(f"{i:09d}", {"jpg": bytes([i]) * 10, "txt": f"caption {i}".encode()}) for i in range(5)]
    assert write_tar(tmp_path / "a.tar", samples) == 5
    assert list(iter_tar(tmp_path / "a.tar")) == samples
    first = (tmp_path / "a.tar").read_bytes()
    write_tar(tmp_path / "a.tar", samples)
    assert (tmp_path / "a.tar").read_bytes() == first  # deterministic bytes


@pytest.mark.parametrize("name,expected", [
    ("000000012.jpg", ("000000012", "jpg")),
    ("dir/000000012.seg.json", ("dir/000000012", "seg.json")),
])
def test_split_member_follows_the_webdataset_key_rule(name, expected):
    assert split_member(name) == expected
