"""Training shards planned from per-partition kept counts: the driver never holds a manifest row.

A shard is a list of (partition, start, stop) ranges over the kept rows of each partition in
sample_id order, partitions in name order: with unit-prefixed sample_ids (``crawl.sources.sample_key``)
that is the global sample_id order (an img2dataset input keeps its own keys: shards then follow unit
order, then key order). Shard sizes are ``manifests.export.shard_sizes``'.
Each export task reads only the partitions of its ranges; each partition's manifest task gets only
its own spans.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardRange:
    partition: str
    start: int  # position among the partition's kept rows, sample_id order
    stop: int


def plan_sizes(kept_counts: dict[str, int], sizes: list[int]) -> list[list[ShardRange]]:
    """Shards of the given ``sizes`` (``manifests.export.shard_sizes``) over the partitions' kept rows."""
    if sum(sizes) != sum(kept_counts.values()):
        raise ValueError(f"shard sizes add up to {sum(sizes)}, the partitions hold {sum(kept_counts.values())} kept rows")
    shards: list[list[ShardRange]] = []
    flat = [(p, kept_counts[p]) for p in sorted(kept_counts) if kept_counts[p]]
    part, offset = 0, 0
    for size in sizes:
        ranges: list[ShardRange] = []
        while size:
            name, count = flat[part]
            take = min(size, count - offset)
            ranges.append(ShardRange(name, offset, offset + take))
            size, offset = size - take, offset + take
            if offset == count:
                part, offset = part + 1, 0
        shards.append(ranges)
    return shards


def spans_by_partition(shards: list[list[ShardRange]]) -> dict[str, list[tuple[int, int, int]]]:
    """Partition -> its (start, stop, shard index) spans: what a partition's manifest task needs to locate
    its kept rows in the shards, without the whole plan."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for index, ranges in enumerate(shards):
        for r in ranges:
            out.setdefault(r.partition, []).append((r.start, r.stop, index))
    return out
