"""One work unit -> a staged WebDataset tar of decoded images and a Parquet row for every input row.

Reads a unit (a Parquet of URLs or files, or an input tar), fetches or reads each sample's bytes,
stages it with ``stage_image`` and writes ``{unit}.tar`` and ``{unit}.parquet`` atomically, the
Parquet last: its presence is what marks the unit done. Every input row gets exactly one row.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from crawl.config import CrawlConfig
from crawl.fetch import Fetched, Fetcher
from crawl.image import stage_image
from crawl.sources import Unit
from manifests import schema as col
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import INGEST_SCHEMA, Status
from manifests.shards import iter_tar, write_tar

WDS_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def read_file_uri(uri: str) -> Fetched:
    path = Path(uri.removeprefix("file://"))
    try:
        return Fetched(Status.SUCCESS, data=path.read_bytes(), attempts=1)
    except OSError as exc:
        return Fetched(Status.FAILED_TO_DOWNLOAD, f"{type(exc).__name__}: {exc}", attempts=1)


def _unit_samples(unit: Unit, crawl: CrawlConfig) -> Iterator[tuple[dict, Fetched]]:
    """(identity columns, fetched bytes) for each input row of the unit, in input order."""
    if unit.kind == "webdataset":
        yield from _wds_samples(unit)
        return
    rows = pq.read_table(unit.path).to_pylist()
    urls = [r[col.URL] for r in rows]
    fetched = Fetcher(crawl).fetch_all(urls) if unit.kind == "url_list" else [read_file_uri(u) for u in urls]
    yield from zip(rows, fetched)


def _wds_samples(unit: Unit) -> Iterator[tuple[dict, Fetched]]:
    for position, (key, members) in enumerate(iter_tar(unit.path)):
        meta = _json_or_empty(members.get("json"))
        caption = members.get("txt", b"").decode("utf-8", errors="replace") if "txt" in members else meta.get("caption")
        row = {col.SAMPLE_ID: key.rpartition("/")[2], col.URL: meta.get("url"), col.CAPTION: caption,
               col.SOURCE: unit.path, col.SOURCE_ROW: position}
        image = next((members[e] for e in WDS_IMAGE_EXTS if e in members), None)
        if image is None:
            yield row, Fetched(Status.NOT_AN_IMAGE, f"sample has no image member ({sorted(members)})", attempts=1)
        else:
            yield row, Fetched(Status.SUCCESS, data=image, attempts=1)


def _json_or_empty(data: bytes | None) -> dict:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def ingest_unit(unit: Unit, crawl: CrawlConfig, layout: RunLayout) -> dict:
    """Stage one unit; returns {"unit": index, "rows": n, "status": {status: count}}."""
    tar_path, rows_path = layout.staged_tar(unit.index), layout.staged_rows(unit.index)
    records: list[dict] = []
    staged: list[tuple[str, dict[str, bytes]]] = []
    for identity, fetched in _unit_samples(unit, crawl):
        records.append(_record(identity, fetched, crawl, staged, layout.relative(tar_path)))
    write_tar(tar_path, staged)
    table = pa.Table.from_pylist(records, schema=INGEST_SCHEMA)
    write_parquet(table, rows_path)
    return {"unit": unit.index, "rows": len(records), "status": dict(Counter(r[col.STATUS] for r in records))}


def _record(identity: dict, fetched: Fetched, crawl: CrawlConfig, staged: list, shard: str) -> dict:
    record = {**identity, col.STATUS: fetched.status, col.ERROR: fetched.error,
              col.HTTP_STATUS: fetched.http_status, col.ATTEMPTS: fetched.attempts}
    if fetched.status == Status.SUCCESS:
        record.update(_stage(fetched.data, crawl, record, staged, shard))
    return record


def _stage(data: bytes, crawl: CrawlConfig, record: dict, staged: list, shard: str) -> dict:
    result = stage_image(data, crawl)
    out = {
        col.STATUS: result.status, col.ERROR: result.error, col.MIME_TYPE: result.mime_type,
        col.BYTES: len(data), col.SHA256: hashlib.sha256(data).hexdigest(),
        col.WIDTH: result.width, col.HEIGHT: result.height,
        col.ORIGINAL_WIDTH: result.original_width, col.ORIGINAL_HEIGHT: result.original_height,
    }
    if result.status == Status.SUCCESS:
        key = record[col.SAMPLE_ID]
        members = {crawl.encode_format: result.data, "txt": (record[col.CAPTION] or "").encode("utf-8")}
        staged.append((key, members))
        out[col.SHARD], out[col.MEMBER] = shard, f"{key}.{crawl.encode_format}"
    return out


# --- retry: refetch the retryable failures of a staged unit, in place -----------------------------

IDENTITY = (col.SAMPLE_ID, col.URL, col.CAPTION, col.SOURCE, col.SOURCE_ROW)


def units_to_retry(units: list[Unit], layout: RunLayout) -> list[Unit]:
    """Units never staged, and staged units holding a row whose status is retryable."""
    def needs(unit: Unit) -> bool:
        rows = layout.staged_rows(unit.index)
        if not rows.exists():
            return True
        statuses = pq.read_table(rows, columns=[col.STATUS]).column(0).to_pylist()
        return any(s in Status.RETRYABLE for s in statuses)
    return [u for u in units if needs(u)]


def retry_unit(unit: Unit, crawl: CrawlConfig, layout: RunLayout) -> dict:
    """Refetch the unit's retryable rows and rewrite its tar and Parquet atomically, Parquet last.

    The new tar keeps exactly the samples of rows that were successes plus the new successes, so a
    crash between the two writes is repaired by running the retry again.
    """
    tar_path, rows_path = layout.staged_tar(unit.index), layout.staged_rows(unit.index)
    if not rows_path.exists():
        return ingest_unit(unit, crawl, layout)
    records = pq.read_table(rows_path).to_pylist()
    retry = [i for i, r in enumerate(records) if r[col.STATUS] in Status.RETRYABLE and unit.kind != "webdataset"]
    urls = [records[i][col.URL] for i in retry]
    fetched = Fetcher(crawl).fetch_all(urls) if unit.kind == "url_list" else [read_file_uri(u) for u in urls]
    members = _staged_members(tar_path, {r[col.SAMPLE_ID] for r in records if r[col.STATUS] == Status.SUCCESS})
    staged: list[tuple[str, dict[str, bytes]]] = []
    for i, result in zip(retry, fetched):
        previous = records[i][col.ATTEMPTS] or 0
        records[i] = _record({k: records[i][k] for k in IDENTITY}, result, crawl, staged, layout.relative(tar_path))
        records[i][col.ATTEMPTS] = previous + (result.attempts or 0)
    members.update(staged)
    write_tar(tar_path, [(r[col.SAMPLE_ID], members[r[col.SAMPLE_ID]]) for r in records
                         if r[col.STATUS] == Status.SUCCESS])
    write_parquet(pa.Table.from_pylist(records, schema=INGEST_SCHEMA), rows_path)
    return {"unit": unit.index, "rows": len(records), "status": dict(Counter(r[col.STATUS] for r in records))}


def _staged_members(tar_path: Path, keys: set[str]) -> dict[str, dict[str, bytes]]:
    if not tar_path.exists():
        return {}
    return {key: members for key, members in iter_tar(tar_path) if key in keys}
