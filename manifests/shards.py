"""WebDataset tar shards: samples are consecutive members sharing a key (``{key}.jpg``, ``{key}.txt``).

Written with the standard library so that staged and exported shards are byte-for-byte
deterministic (fixed mtime, owner and mode), and read back by key without decoding anything.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

from manifests.io import atomic_path

Sample = tuple[str, dict[str, bytes]]


def split_member(name: str) -> tuple[str, str]:
    """``dir/000012.jpg`` -> (``dir/000012``, ``jpg``), the WebDataset rule: the key ends at the first dot."""
    head, _, base = name.rpartition("/")
    key, _, ext = base.partition(".")
    return (f"{head}/{key}" if head else key), ext


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o444
    info.mtime = 0
    info.uname = info.gname = "thresher"
    tar.addfile(info, io.BytesIO(data))


def write_tar(path: Path, samples: Iterable[Sample]) -> int:
    """Write ``samples`` to ``path`` atomically; returns how many were written."""
    count = 0
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                _add(tar, f"{key}.{ext}", data)
            count += 1
    return count


def iter_tar(path: Path | str, fileobj=None) -> Iterator[Sample]:
    """Yield (key, {ext: bytes}) for each sample, in tar order."""
    current_key, members = None, {}
    with tarfile.open(path if fileobj is None else None, "r|*", fileobj=fileobj) as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, ext = split_member(info.name)
            if key != current_key and members:
                yield current_key, members
                members = {}
            current_key = key
            members[ext] = tar.extractfile(info).read()
    if members:
        yield current_key, members
