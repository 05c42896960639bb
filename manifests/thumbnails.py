"""Small JPEG thumbnails of staged images, as ``data:`` URIs, read straight from the staged tars.

Each staged tar that holds a wanted image is read once, sequentially. An image that is missing or
cannot be decoded gets no thumbnail (the report shows why), never an exception.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path

from manifests.shards import iter_tar


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail(data: bytes, size: int) -> bytes | None:
    """A JPEG no larger than ``size`` x ``size``; None when the bytes are not a decodable image. JPEGs are
    decoded at a reduced scale (``draft``), several times faster for a large original."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (size, size))
            image.thumbnail((size, size))
            out = io.BytesIO()
            image.convert("RGB").save(out, format="JPEG", quality=80)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def staged_bytes(images_root: Path, locations: dict[str, tuple[str, str]]) -> dict[str, bytes]:
    """sample_id -> staged image bytes, for ``locations`` of sample_id -> (shard, member)."""
    by_shard: dict[str, dict[str, str]] = defaultdict(dict)
    for sample_id, (shard, member) in locations.items():
        by_shard[shard][member] = sample_id
    found = {}
    for shard, members in by_shard.items():
        path = images_root / shard
        if not path.exists():
            continue
        for key, files in iter_tar(path):
            for ext, data in files.items():
                sample_id = members.get(f"{key}.{ext}")
                if sample_id is not None:
                    found[sample_id] = data
    return found


def thumbnails(images_root: Path, locations: dict[str, tuple[str, str]], size: int = 160) -> dict[str, str]:
    """sample_id -> ``data:image/jpeg`` URI of its thumbnail, for those that could be read and decoded."""
    uris = {}
    for sample_id, data in staged_bytes(images_root, locations).items():
        thumb = thumbnail(data, size)
        if thumb is not None:
            uris[sample_id] = data_uri(thumb, "image/jpeg")
    return uris
