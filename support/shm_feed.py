"""Decoded batches handed from the decode processes to the GPU process through shared memory.

This is how Ray hands a ``map_batches`` block to an actor: the producer writes the arrays once into shared
memory (Ray's object store is an mmap of /dev/shm) and the consumer maps them, so nothing large is pickled
through a pipe and unpickled under the consumer's GIL. The bench's ``processes (shm)`` rows use it; the
``processes`` rows pickle the decoded batch back through ``concurrent.futures`` as a baseline.

A ``Ring`` holds a fixed set of blocks (one per batch in flight); a slot is taken when a decode is
submitted and given back when the stages are done with the batch.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import os
import queue
import shutil
from multiprocessing import shared_memory
from typing import Any, Callable

import numpy as np

from manifests.decode import DecodePlan, decode_batch

ALIGN = 4096
SLOT = "_shm_slot"  # the batch key that says which slot to give back
_ATTACHED: dict[str, shared_memory.SharedMemory] = {}


def attach(name: str) -> shared_memory.SharedMemory:
    """The producer's handle on a block the consumer created, kept until a block of a newer ring comes. (Its
    registration with the resource tracker is the consumer's own entry: pool workers share the consumer's
    tracker, and the consumer unlinks the block.)"""
    if name not in _ATTACHED:
        ring = name.rsplit("_", 1)[0]
        for old in [n for n in _ATTACHED if not n.startswith(ring + "_")]:  # an earlier ring's: let it go
            _ATTACHED.pop(old).close()
        _ATTACHED[name] = shared_memory.SharedMemory(name=name)
    return _ATTACHED[name]


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


def written(out: dict[str, Any], name: str) -> tuple[dict, dict]:
    """``out``'s fixed-dtype arrays written into block ``name``: (the other columns, where each array lies
    as key -> (offset, shape, dtype)). What every task a ``Ring`` runs returns."""
    block, offset, layout = attach(name), 0, {}
    for key, value in out.items():
        if isinstance(value, np.ndarray) and value.dtype != object and offset + value.nbytes <= block.size:
            np.ndarray(value.shape, value.dtype, buffer=block.buf, offset=offset)[...] = value
            layout[key] = (offset, value.shape, value.dtype.str)
            offset += aligned(value.nbytes)
    return {k: v for k, v in out.items() if k not in layout}, layout


def decode_into(batch: dict[str, np.ndarray], plan: DecodePlan, name: str) -> tuple[dict, dict]:
    """One decode task, its arrays written into block ``name``."""
    return written(decode_batch(batch, plan), name)


class Ring:
    """``slots`` shared blocks of ``slot_bytes`` each, created by the consumer and unlinked by ``close``."""

    made = itertools.count()

    def __init__(self, slots: int, slot_bytes: int) -> None:
        free = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else None
        if free is not None and free < slots * slot_bytes * 1.1:  # a full tmpfs kills the writer with SIGBUS
            raise OSError(f"/dev/shm has {free >> 20} MiB free; {slots} batches in flight need "
                          f"{slots * slot_bytes >> 20} MiB")
        ring = f"thresher_{os.getpid()}_{next(Ring.made)}"
        self.blocks = [shared_memory.SharedMemory(f"{ring}_{i}", create=True, size=slot_bytes)
                       for i in range(slots)]
        self.inflight: set[cf.Future] = set()
        self.free: queue.Queue[int] = queue.Queue()
        for slot in range(slots):
            self.free.put(slot)

    def submit(self, pool: cf.Executor, task: Callable[..., tuple[dict, dict]], *args: Any) -> cf.Future:
        """A future of ``task(*args, block name)``'s batch (``decode_into``: a decoded batch), its arrays views
        of a slot (``SLOT`` names it for ``release``)."""
        slot = self.free.get()
        done: cf.Future = cf.Future()

        def mapped(future: cf.Future) -> None:
            try:
                rest, layout = future.result()
            except BaseException as error:  # the decode failed: hand the slot back, report the error
                self.free.put(slot)
                done.set_exception(error)
                return
            buf = self.blocks[slot].buf
            arrays = {k: np.ndarray(shape, np.dtype(dtype), buffer=buf, offset=offset)
                      for k, (offset, shape, dtype) in layout.items()}
            done.set_result({**rest, **arrays, SLOT: slot})

        self.inflight.add(done)  # done is set inside ``mapped``, after the views are made
        done.add_done_callback(self.inflight.discard)
        pool.submit(task, *args, self.blocks[slot].name).add_done_callback(mapped)
        return done

    def release(self, batch: dict) -> None:
        if SLOT in batch:
            self.free.put(batch.pop(SLOT))

    def close(self) -> None:
        """Wait for the decodes still writing into the blocks, then unlink them."""
        cf.wait(list(self.inflight))
        for block in self.blocks:
            try:
                block.close()
            except BufferError:  # a batch's views still alive: the mapping goes with the process
                pass
            block.unlink()


def slot_bytes(sample: dict[str, Any]) -> int:
    """A slot that holds one decoded batch like ``sample`` (each array aligned)."""
    sizes = [v.nbytes for v in sample.values() if isinstance(v, np.ndarray) and v.dtype != object]
    return sum(aligned(n) for n in sizes) + ALIGN


def _made(rows: int) -> np.ndarray:
    return np.full((rows, 224, 224, 3), 7, dtype=np.uint8)  # a decoded ClipPixels batch, without the decode


def _made_into(rows: int, name: str) -> tuple[dict, dict]:
    return written({"pixels": _made(rows)}, name)


def transport_ceiling(rows: int = 256, batches: int = 60, workers: int = 2) -> dict[str, float]:
    """Images/s one consumer receives decoded batches at, pickled through the pool's pipe vs through shared
    memory, the decode itself left out (producers hand over a ready array); the consumer copies each batch
    once, as ``to_device`` stages it into pinned memory."""
    import collections
    import multiprocessing
    import time

    staging = np.empty((rows, 224, 224, 3), dtype=np.uint8)
    rates = {}
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_made, [1] * workers))  # start the workers
        start = time.perf_counter()
        for future in [pool.submit(_made, rows) for _ in range(batches)]:
            staging[...] = future.result()
        rates["pipe"] = rows * batches / (time.perf_counter() - start)
        ring = Ring(2 * workers, aligned(staging.nbytes))
        start, submitted = time.perf_counter(), 2 * workers
        pending = collections.deque(ring.submit(pool, _made_into, rows) for _ in range(submitted))
        while pending:
            batch = pending.popleft().result()
            staging[...] = batch["pixels"]
            ring.release(batch)
            del batch
            if submitted < batches:
                pending.append(ring.submit(pool, _made_into, rows))
                submitted += 1
        rates["shm"] = rows * batches / (time.perf_counter() - start)
        ring.close()
    return rates


if __name__ == "__main__":
    for name, rate in transport_ceiling().items():
        print(f"{name:5} {rate:9.0f} images/s into one consumer (224x224 RGB batches of 256, decode left out)")
