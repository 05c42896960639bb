"""One work unit -> a staged WebDataset tar of decoded images and a Parquet row for every input row.

Reads a unit (a Parquet of URLs or files, or an input tar), fetches or reads each sample's bytes,
stages it with ``stage_image`` and writes ``{unit}.tar`` and ``{unit}.parquet`` atomically, the
Parquet last: its presence is what marks the unit done. Every input row gets exactly one row.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq

from crawl.blocklist import blocked_fields
from crawl.config import CrawlConfig
from crawl.fetch import Fetched, Fetcher
from crawl.image import stage_image
from crawl.img2dataset import shard_rows
from crawl.origins import origin_gate
from crawl.provenance import provenance
from crawl.readers import INPUT_ERROR
from crawl.sources import UNIT_SCHEMA, Unit
from manifests import schema as col
from manifests.integrity import with_tar_size
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import INGEST_SCHEMA, Status
from manifests.shards import iter_tar, write_tar

CONTENT_COLUMNS = (col.CONTENT_LEFT, col.CONTENT_TOP, col.CONTENT_WIDTH, col.CONTENT_HEIGHT)
BOX_MEMBER = "box"  # staged tar member "{key}.box": the content box as "left,top,width,height"

Outcome = tuple[dict, tuple[str, dict[str, bytes]] | None]  # (manifest row, staged sample or None)
OnRow = Callable[[str], None]  # told each row's status as soon as it is final: the driver's progress in rows


@lru_cache(maxsize=4)
def worker_fetcher(crawl: CrawlConfig) -> Fetcher:
    """One Fetcher per worker process and config, so the DNS cache is shared by every unit it stages."""
    return Fetcher(crawl)


def decode_pool(threads: int) -> ThreadPoolExecutor:
    """Decoding runs here while the event loop keeps fetching: Pillow releases the GIL as it decodes."""
    return _decode_pool(threads, os.getpid())


@lru_cache(maxsize=4)
def _decode_pool(threads: int, pid: int) -> ThreadPoolExecutor:
    # Keyed by pid: a forked child inherits the cache but not the threads, and would wait forever.
    return ThreadPoolExecutor(threads, thread_name_prefix="thresher-decode")


def read_file_uri(uri: str) -> Fetched:
    path = Path(uri.removeprefix("file://"))
    try:
        return Fetched(Status.SUCCESS, data=path.read_bytes(), attempts=1)
    except OSError as exc:
        return Fetched(Status.FAILED_TO_DOWNLOAD, f"{type(exc).__name__}: {exc}", attempts=1)


def reported(result: Outcome, on_row: OnRow | None) -> Outcome:
    if on_row is not None:
        on_row(result[0][col.STATUS])
    return result


def _unit_outcomes(unit: Unit, crawl: CrawlConfig, fetcher: Fetcher | None, on_row: OnRow | None) -> list[Outcome]:
    """One outcome per input row of the unit, in input order."""
    if unit.kind == "webdataset":
        return [reported(carry(outcome(row, fetched, crawl), carried), on_row)
                for row, fetched, carried in shard_rows(Path(unit.path), unit.extra_cols)]
    rows = pq.read_table(unit.path).to_pylist()
    valid = [i for i, row in enumerate(rows) if not row.get(INPUT_ERROR)]
    results = [invalid_row(row) for row in rows]
    for i in sorted(set(range(len(rows))) - set(valid)):
        reported(results[i], on_row)
    if unit.kind == "url_list":
        fetched = asyncio.run(crawl_rows([rows[i] for i in valid], fetcher or worker_fetcher(crawl), crawl, on_row))
    else:
        fetched = [reported(outcome(rows[i], read_file_uri(rows[i][col.URL]), crawl), on_row) for i in valid]
    for i, result in zip(valid, fetched):
        results[i] = result
    return results


def invalid_row(row: dict) -> Outcome:
    """The row of an input line that could not be read (a malformed JSON line): nothing to fetch."""
    return {**row, col.STATUS: Status.INVALID_INPUT_ROW, col.ERROR: row.get(INPUT_ERROR), col.ATTEMPTS: 0}, None


def carry(result: Outcome, carried: dict) -> Outcome:
    """img2dataset's record of the original (sizes, sha256, EXIF) over what the resized copy would say."""
    record, sample = result
    record.update(carried)
    return record, sample


def ingest_schema(unit: Unit) -> pa.Schema:
    """INGEST_SCHEMA plus the unit's extra input columns (``input.extra_cols``), carried as they are."""
    if unit.kind == "webdataset":
        extra = [pa.field(name, pa.string()) for name in unit.extra_cols]
    else:
        extra = [f for f in pq.read_schema(unit.path) if f.name not in UNIT_SCHEMA.names]
    return pa.schema(list(INGEST_SCHEMA) + [f for f in extra if f.name not in INGEST_SCHEMA.names])


async def crawl_rows(rows: list[dict], fetcher: Fetcher, crawl: CrawlConfig,
                     on_row: OnRow | None = None) -> list[Outcome]:
    """Fetch and stage every row, at most ``crawl.concurrency`` in flight (fetching or decoding).

    The gate covers decoding too, so downloaded bytes waiting for a decode thread are bounded by it.
    """
    loop, gate = asyncio.get_running_loop(), asyncio.Semaphore(crawl.concurrency)
    pool = decode_pool(crawl.decode_threads)
    results: list[Outcome | None] = [None] * len(rows)
    origins = origin_gate(fetcher)  # robots.txt and tdmrep.json, asked before every hop
    admit = origins.admit if origins.active else None

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        try:
            fetched = await fetcher.fetch(session, rows[i][col.URL], admit=admit)
            fetched_at = datetime.now(timezone.utc)
            results[i] = await loop.run_in_executor(pool, outcome, rows[i], fetched, crawl)
            results[i][0][col.FETCHED_AT] = fetched_at
            reported(results[i], on_row)
        finally:
            gate.release()

    async with fetcher.session() as session:
        tasks = []
        for i in range(len(rows)):
            await gate.acquire()
            tasks.append(asyncio.create_task(one(i, session)))
        await asyncio.gather(*tasks)
    return results  # type: ignore[return-value]  # every slot is filled once gather returns


def ingest_unit(unit: Unit, crawl: CrawlConfig, layout: RunLayout, fetcher: Fetcher | None = None,
                on_row: OnRow | None = None) -> dict:
    """Stage one unit; returns {"unit": index, "rows": n, "status": {status: count}}."""
    tar_path, rows_path = layout.staged_tar(unit.index), layout.staged_rows(unit.index)
    shard = layout.relative(tar_path)
    outcomes = _unit_outcomes(unit, crawl, fetcher, on_row)
    records = [record for record, _ in outcomes]
    for record, sample in outcomes:
        if sample is not None:
            record[col.SHARD] = shard
    write_tar(tar_path, (sample for _, sample in outcomes if sample is not None))
    write_parquet(with_tar_size(pa.Table.from_pylist(records, schema=ingest_schema(unit)), tar_path), rows_path)
    return {"unit": unit.index, "rows": len(records), "status": dict(Counter(r[col.STATUS] for r in records))}


def outcome(identity: dict, fetched: Fetched, crawl: CrawlConfig) -> Outcome:
    """The manifest row for one input row and, on success, its staged sample (key, {ext: bytes})."""
    record = {**identity, col.STATUS: fetched.status, col.ERROR: fetched.error,
              col.HTTP_STATUS: fetched.http_status, col.ATTEMPTS: fetched.attempts, col.TDM_POLICY: fetched.tdm_policy}
    if fetched.status != Status.SUCCESS or fetched.data is None:
        return record, None
    data = fetched.data
    blocked = blocked_fields(data, crawl)  # before any decode: a listed file's bytes go no further
    if blocked is not None:
        record.update(blocked)
        return record, None
    result = stage_image(data, crawl)
    record.update({
        col.STATUS: result.status, col.ERROR: result.error, col.MIME_TYPE: result.mime_type,
        col.BYTES: len(data), col.SHA256: hashlib.sha256(data).hexdigest(),
        col.WIDTH: result.width, col.HEIGHT: result.height,
        col.ORIGINAL_WIDTH: result.original_width, col.ORIGINAL_HEIGHT: result.original_height,
    })
    if result.content_box is not None:
        record.update(zip(CONTENT_COLUMNS, result.content_box))
    if result.status != Status.SUCCESS:
        return record, None
    if crawl.provenance:
        record.update(provenance(data, result.mime_type))
    key = record[col.SAMPLE_ID]
    record[col.MEMBER] = f"{key}.{crawl.encode_format}"
    members = {crawl.encode_format: result.data, "txt": (record.get(col.CAPTION) or "").encode("utf-8")}
    if result.content_box is not None:  # the score phase reads it beside the image (phases._stage_batch)
        members[BOX_MEMBER] = ",".join(map(str, result.content_box)).encode("ascii")
    return record, (key, members)


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


def _refetch(unit: Unit, rows: list[dict], crawl: CrawlConfig, on_row: OnRow | None) -> list[Outcome]:
    if unit.kind == "url_list":
        return asyncio.run(crawl_rows(rows, worker_fetcher(crawl), crawl, on_row))
    return [reported(outcome(row, read_file_uri(row[col.URL]), crawl), on_row) for row in rows]


def retry_unit(unit: Unit, crawl: CrawlConfig, layout: RunLayout, fetcher: Fetcher | None = None,
               on_row: OnRow | None = None) -> dict:
    """Refetch the unit's retryable rows and rewrite its tar and Parquet atomically, Parquet last.

    The new tar keeps exactly the samples of rows that were successes plus the new successes, so a
    crash between the two writes is repaired by running the retry again.
    """
    tar_path, rows_path = layout.staged_tar(unit.index), layout.staged_rows(unit.index)
    if not rows_path.exists():
        return ingest_unit(unit, crawl, layout, fetcher, on_row)
    staged = pq.read_table(rows_path)
    records = staged.to_pylist()
    retry = [i for i, r in enumerate(records) if r[col.STATUS] in Status.RETRYABLE and unit.kind != "webdataset"]
    identity = [n for n in staged.column_names if n in IDENTITY or n not in INGEST_SCHEMA.names]  # extras too
    outcomes = _refetch(unit, [{k: records[i][k] for k in identity} for i in retry], crawl, on_row)
    members = _staged_members(tar_path, {r[col.SAMPLE_ID] for r in records if r[col.STATUS] == Status.SUCCESS})
    for i, (record, sample) in zip(retry, outcomes):
        record[col.ATTEMPTS] = (records[i][col.ATTEMPTS] or 0) + (record[col.ATTEMPTS] or 0)
        if sample is not None:
            record[col.SHARD] = layout.relative(tar_path)
            members[sample[0]] = sample[1]
        records[i] = record
    write_tar(tar_path, [(r[col.SAMPLE_ID], members[r[col.SAMPLE_ID]]) for r in records
                         if r[col.STATUS] == Status.SUCCESS])
    write_parquet(with_tar_size(pa.Table.from_pylist(records, schema=staged.schema), tar_path), rows_path)
    return {"unit": unit.index, "rows": len(records), "status": dict(Counter(r[col.STATUS] for r in records))}


def _staged_members(tar_path: Path, keys: set[str]) -> dict[str, dict[str, bytes]]:
    if not tar_path.exists():
        return {}
    return {key: members for key, members in iter_tar(tar_path) if key in keys}
