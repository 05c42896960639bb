"""img2dataset's output as input: every row it wrote for a shard, with what it knew about the original.

img2dataset writes, per shard, ``NNNNN.tar`` (successes: ``{key}.jpg``, ``.txt``, ``.json``) and
``NNNNN.parquet`` (one row per input row: ``key``, ``url``, ``caption``, ``status``,
``error_message``, sizes, ``sha256``, ``exif`` and its ``--save_additional_columns``). The tar's image
is already resized, so the original's sizes, hash and EXIF are taken from that metadata when present,
never recomputed from the resized copy. Failure rows (404s, resize failures) come from the Parquet
with their status, so "one manifest row per input row" holds for this input too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from crawl.fetch import Fetched
from manifests import schema as col
from manifests.schema import Status
from manifests.shards import iter_tar

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
# Columns of img2dataset's own metadata carried over the values Thresher would compute from the tar.
CARRIED = (col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT, col.SHA256, col.EXIF)
STATUSES = {"success": Status.SUCCESS, "failed_to_download": Status.FAILED_TO_DOWNLOAD,
            "failed_to_resize": Status.FAILED_TO_RESIZE}
_HTTP = re.compile(r"\b(?:HTTP Error|status)\s*:?\s*([1-5]\d\d)\b", re.IGNORECASE)

Row = tuple[dict, Fetched, dict]  # (identity row, image bytes or failure, carried metadata)


def shard_rows(tar: Path, extra_cols: tuple[str, ...] = ()) -> Iterator[Row]:
    """One row per row img2dataset wrote for this shard: its Parquet's rows in order when it has one, then
    any tar sample the Parquet does not list; without a Parquet, the tar's samples in order."""
    table = tar.with_suffix(".parquet")
    samples = iter_tar(tar)
    if not is_row_table(table):
        for position, (key, members) in enumerate(samples):
            yield _sample_row(tar, position, key, members, extra_cols)
        return
    pending: dict[str, dict[str, bytes]] = {}
    position = -1
    for position, meta in enumerate(pq.read_table(table).to_pylist()):
        if meta.get("status") != "success":
            yield _failure_row(tar, position, meta, extra_cols)
            continue
        key = str(meta.get("key"))
        while key not in pending and (nxt := next(samples, None)) is not None:
            pending[_base(nxt[0])] = nxt[1]
        members = pending.pop(key, None)
        if members is None:
            failed = Fetched(Status.NOT_AN_IMAGE, "img2dataset's Parquet lists this key as a success, but its tar "
                                                  "has no such sample", attempts=1)
            yield _identity(tar, position, key, meta, None, extra_cols), failed, _carried(meta)
        else:
            yield _sample_row(tar, position, key, members, extra_cols, meta)
    for key, members in [*pending.items(), *samples]:
        position += 1
        yield _sample_row(tar, position, key, members, extra_cols)


def is_row_table(path: Path) -> bool:
    """Whether ``path`` is img2dataset's per-shard table (its ``key`` and ``status`` columns), not some other
    Parquet beside the tar (Thresher's own staged rows, say)."""
    return path.exists() and {"key", "status"} <= set(pq.read_schema(path).names)


def _base(key: str) -> str:
    return key.rpartition("/")[2]


def _sample_row(tar: Path, position: int, key: str, members: dict[str, bytes], extra_cols: tuple[str, ...],
                table_meta: dict | None = None) -> Row:
    meta = {**(table_meta or {}), **json_object(members.get("json"))}
    caption = members["txt"].decode("utf-8", errors="replace") if "txt" in members else meta.get("caption")
    identity = _identity(tar, position, _base(key), meta, caption, extra_cols)
    image = next((members[e] for e in IMAGE_EXTS if e in members), None)
    if image is None:
        return identity, Fetched(Status.NOT_AN_IMAGE, f"sample has no image member ({sorted(members)})",
                                 attempts=1), _carried(meta)
    return identity, Fetched(Status.SUCCESS, data=image, attempts=1), _carried(meta)


def _failure_row(tar: Path, position: int, meta: dict, extra_cols: tuple[str, ...]) -> Row:
    theirs = str(meta.get("status"))
    status = STATUSES.get(theirs) or (theirs if theirs in Status.ALL else Status.FAILED_TO_DOWNLOAD)
    error = meta.get("error_message") or f"img2dataset status {meta.get('status')!r}"
    match = _HTTP.search(error)
    fetched = Fetched(status, error, http_status=int(match.group(1)) if match else None, attempts=1)
    return _identity(tar, position, str(meta.get("key")), meta, meta.get("caption"), extra_cols), fetched, _carried(meta)


def _identity(tar: Path, position: int, key: str, meta: dict, caption: str | None,
              extra_cols: tuple[str, ...]) -> dict:
    row = {col.SAMPLE_ID: key, col.URL: meta.get("url"), col.CAPTION: caption, col.SOURCE: str(tar),
           col.SOURCE_ROW: position}
    return {**row, **{name: as_text(meta.get(name)) for name in extra_cols}}


def _carried(meta: dict) -> dict:
    """The original's sizes, hash and EXIF as img2dataset recorded them (absent ones are left out)."""
    carried = {name: meta.get(name) for name in CARRIED if meta.get(name) is not None}
    if col.EXIF in carried:
        carried[col.EXIF] = as_text(carried[col.EXIF])
    for name in (col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT):
        if name in carried:
            carried[name] = int(carried[name])
    return carried


def as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def json_object(data: bytes | None) -> dict:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
