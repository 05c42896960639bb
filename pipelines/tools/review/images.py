"""Staged images for the review app: one member of a staged tar, read by seeking, never by a client's path.

The page asks for a row's thumbnail by row index; the tar and member come from the manifest, and a tar
path that would leave the run directory (``..``, an absolute path, a symlink out) is refused. A tar's
member offsets are read once (headers only) and kept for the most recently used tars; thumbnails are
cached too, so paging back is free. The cards of a page start their thumbnails (``prefetch``) before the
browser asks for them; a request for one still being made waits for it instead of making it twice.
"""

from __future__ import annotations

import tarfile
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from manifests.thumbnails import thumbnail

TARS_KEPT = 256
THUMBS_KEPT = 4096
THUMB_WORKERS = 2  # decoding releases the GIL: one per core of a small machine


class OutsideRun(ValueError):
    """A staged path in the manifest that would leave the run directory."""


class _Lru(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def contained(root: Path, relative: str) -> Path:
    """``root / relative``, resolved; OutsideRun unless it stays under ``root``."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise OutsideRun(f"{relative!r} leaves the run directory")
    return path


class StagedImages:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._members: _Lru = _Lru(TARS_KEPT)
        self._thumbs: _Lru = _Lru(THUMBS_KEPT)
        self._making: dict[tuple[str, str, int], Future] = {}
        self._pool = ThreadPoolExecutor(THUMB_WORKERS, thread_name_prefix="thumbnails")
        self._lock = threading.Lock()

    def inside(self, shard: str) -> bool:
        try:
            contained(self.root, shard)
        except OutsideRun:
            return False
        return True

    def _index(self, tar: Path) -> dict[str, tuple[int, int]]:
        with self._lock:
            if tar in self._members:
                return self._members[tar]
        with tarfile.open(tar, "r:") as archive:
            members = {m.name: (m.offset_data, m.size) for m in archive if m.isfile()}
        with self._lock:
            self._members.put(tar, members)
        return members

    def read(self, shard: str, member: str) -> bytes | None:
        """The member's bytes; None when the tar or the member is missing. OutsideRun on a hostile path."""
        tar = contained(self.root, shard)
        if not tar.is_file():
            return None
        where = self._index(tar).get(member)
        if where is None:
            return None
        with open(tar, "rb") as f:
            f.seek(where[0])
            return f.read(where[1])

    def _make(self, key: tuple[str, str, int]) -> bytes | None:
        try:
            data = self.read(key[0], key[1])
            small = thumbnail(data, key[2]) if data is not None else None
            with self._lock:
                if small is not None:
                    self._thumbs.put(key, small)
            return small
        finally:
            with self._lock:
                self._making.pop(key, None)

    def _started(self, key: tuple[str, str, int]) -> Future | bytes | None:
        """The cached thumbnail, or the future making it (started now if nobody had)."""
        with self._lock:
            if key in self._thumbs:
                return self._thumbs[key]
            if key not in self._making:
                self._making[key] = self._pool.submit(self._make, key)
            return self._making[key]

    def prefetch(self, locations: list[tuple[str, str]], size: int = 200) -> None:
        for shard, member in locations:
            self._started((shard, member, size))

    def thumb(self, shard: str, member: str, size: int = 200) -> bytes | None:
        found = self._started((shard, member, size))
        return found.result() if isinstance(found, Future) else found

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
