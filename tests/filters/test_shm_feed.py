"""The bench's shared-memory hand-over gives the consumer what the decode stage made, slot by slot."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing

import numpy as np

from support.shm_feed import SLOT, Ring, decode_into, slot_bytes
from filters.clip import needs
from filters.config import ClipScorerConfig
from manifests.decode import decode_batch, plan_decode


def test_ring_hands_over_the_decoded_batch(photos, make_batch):
    plan = plan_decode([needs(ClipScorerConfig(model="ViT-B-32"))])
    batches = [make_batch(list(photos.values())[i:i + 3] + [(b"junk", "x")]) for i in range(3)]
    expected = [decode_batch(b, plan) for b in batches]
    ring = Ring(2, slot_bytes(expected[0]))
    try:
        with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            for batch, want in zip(batches, expected):
                got = ring.submit(pool, decode_into, batch, plan).result()
                assert set(got) == set(want) | {SLOT}
                for key, value in want.items():
                    same = np.array_equal(got[key], value) if value.dtype != object else list(got[key]) == list(value)
                    assert same, key
                ring.release(got)
                del got
        assert ring.free.qsize() == 2
    finally:
        ring.close()
