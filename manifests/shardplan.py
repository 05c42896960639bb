"""Training shards planned from per-partition kept counts: the driver never holds a manifest row.

A shard is a list of (partition, start, stop) ranges over the kept rows of each partition in
sample_id order, partitions in name order: with unit-prefixed sample_ids (``crawl.sources.sample_key``)
that is the global sample_id order ``manifests.export.plan_shards`` uses, so the shards hold the same
samples. Each export task then reads only its ranges.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardRange:
    partition: str
    start: int  # position among the partition's kept rows, sample_id order
    stop: int


def plan_ranges(kept_counts: dict[str, int], shard_size: int) -> list[list[ShardRange]]:
    """Consecutive shards of ``shard_size`` kept rows (the last may be short) over the partitions."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    shards: list[list[ShardRange]] = []
    current: list[ShardRange] = []
    room = shard_size
    for partition in sorted(kept_counts):
        start, count = 0, kept_counts[partition]
        while start < count:
            take = min(room, count - start)
            current.append(ShardRange(partition, start, start + take))
            start, room = start + take, room - take
            if room == 0:
                shards.append(current)
                current, room = [], shard_size
    if current:
        shards.append(current)
    return shards
