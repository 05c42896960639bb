"""Each fault of the loopback server lands on its documented status, with retries exactly where they belong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from crawl_support import RecordingSleep, crawl, fast_config
from faultserver import bomb_png

from manifests import schema as col
from manifests.schema import Status

REPO = Path(__file__).resolve().parents[2]

# path -> (status, http_status, requests the server must see with retries=2)
FAULTS = {
    "/ok.jpg": (Status.SUCCESS, 200, 1),
    "/404": (Status.FAILED_TO_DOWNLOAD, 404, 1),
    "/410": (Status.FAILED_TO_DOWNLOAD, 410, 1),
    "/403": (Status.FAILED_TO_DOWNLOAD, 403, 1),
    "/503": (Status.FAILED_TO_DOWNLOAD, 503, 3),
    "/429-then-ok": (Status.SUCCESS, 200, 2),
    "/429-date-then-ok": (Status.SUCCESS, 200, 2),
    "/429-long": (Status.FAILED_TO_DOWNLOAD, 429, 1),
    "/500-then-ok": (Status.SUCCESS, 200, 2),
    "/408-then-ok": (Status.SUCCESS, 200, 2),
    "/reset": (Status.FAILED_TO_DOWNLOAD, None, None),  # counted in test_reset_is_retried
    "/reset-mid-body": (Status.FAILED_TO_DOWNLOAD, None, 3),
    "/truncated.jpg": (Status.FAILED_TO_DECODE, 200, 1),
    "/redirect/3": (Status.SUCCESS, 200, None),
    "/redirect/9": (Status.FAILED_TO_DOWNLOAD, None, None),
    "/loop-a": (Status.FAILED_TO_DOWNLOAD, 302, None),
    "/page.html": (Status.NOT_AN_IMAGE, 200, 1),
    "/empty.jpg": (Status.NOT_AN_IMAGE, 200, 1),
    "/huge-declared": (Status.TOO_LARGE, 200, 1),
    "/huge-chunked": (Status.TOO_LARGE, 200, 1),
    "/bomb.png": (Status.DECOMPRESSION_BOMB, 200, 1),
    "/gzip-bomb.jpg": (Status.TOO_LARGE, 200, 1),
    "/noai.jpg": (Status.DISALLOWED_BY_ROBOTS, 200, 1),
    "/ours-noimageai.jpg": (Status.DISALLOWED_BY_ROBOTS, 200, 1),
    "/other-noai.jpg": (Status.SUCCESS, 200, 1),
    "/noindex-nofollow.jpg": (Status.DISALLOWED_BY_ROBOTS, 200, 1),
}


@pytest.fixture(scope="module")
def fault_rows(_server_a) -> dict[str, dict]:
    """Every fault route crawled once, concurrently, through the real fetch + stage path."""
    _server_a.reset()
    sleep = RecordingSleep()
    paths = list(FAULTS)
    rows = crawl([_server_a.url(p) for p in paths], fast_config(read_timeout_s=3.0, concurrency=8), sleep=sleep)
    return {"rows": dict(zip(paths, rows)), "hits": dict(_server_a.hits), "sleep": sleep}


@pytest.mark.parametrize("path", list(FAULTS))
def test_fault_lands_on_its_status(fault_rows: dict, path: str) -> None:
    row = fault_rows["rows"][path]
    status, http_status, _ = FAULTS[path]
    assert row[col.STATUS] == status, row[col.ERROR]
    assert row[col.STATUS] in Status.ALL
    assert row[col.HTTP_STATUS] == http_status
    assert (row[col.ERROR] is None) == (status == Status.SUCCESS)


@pytest.mark.parametrize("path", [p for p, (_, _, n) in FAULTS.items() if n is not None])
def test_retries_only_where_they_help(fault_rows: dict, path: str) -> None:
    expected = FAULTS[path][2]
    row = fault_rows["rows"][path]
    assert fault_rows["hits"].get(path, 0) == expected, (row[col.ATTEMPTS], row[col.ERROR])
    assert fault_rows["rows"][path][col.ATTEMPTS] == expected


def test_redirects_followed_counted_and_bounded(fault_rows: dict) -> None:
    hits, rows = fault_rows["hits"], fault_rows["rows"]
    assert [hits.get(f"/redirect/{n}", 0) for n in (3, 2, 1)] == [1, 1, 1]
    assert "max_redirects=5" in rows["/redirect/9"][col.ERROR]
    assert hits.get("/redirect/3", 0) + hits.get("/redirect/4", 0) == 2  # /redirect/9 stops after 6 hops
    assert "redirect loop" in rows["/loop-a"][col.ERROR]
    assert (hits["/loop-a"], hits["/loop-b"]) == (1, 1)  # a loop is not retried
    assert rows["/redirect/9"][col.ATTEMPTS] == rows["/loop-a"][col.ATTEMPTS] == 1


def test_retry_after_is_honoured_and_long_waits_refused(fault_rows: dict) -> None:
    delays = fault_rows["sleep"].delays
    assert any(d >= 2.0 for d in delays), delays  # Retry-After: 2
    assert any(d >= 4.0 for d in delays), delays  # Retry-After: <HTTP date 5 s ahead>
    assert "exceeds max_retry_after_s" in fault_rows["rows"]["/429-long"][col.ERROR]
    assert max(delays) < 60


def test_success_rows_carry_every_column(fault_rows: dict) -> None:
    row = fault_rows["rows"]["/ok.jpg"]
    assert row[col.MIME_TYPE] == "image/jpeg" and len(row[col.SHA256]) == 64 and row[col.BYTES] > 1000
    assert (row[col.ORIGINAL_WIDTH], row[col.ORIGINAL_HEIGHT]) == (640, 480)
    assert (row[col.WIDTH], row[col.HEIGHT]) == (64, 64)
    assert row[col.MEMBER] == f"{row[col.SAMPLE_ID]}.jpg"


def test_reset_is_retried(fault_rows: dict) -> None:
    """3 attempts; aiohttp may resend once more on a reused keep-alive connection (RFC 9112 9.3.1)."""
    assert fault_rows["rows"]["/reset"][col.ATTEMPTS] == 3
    assert 3 <= fault_rows["hits"]["/reset"] <= 6


def test_slow_body_times_out_and_is_retried(server) -> None:
    sleep = RecordingSleep()
    [row] = crawl([server.url("/slow-body")], fast_config(retries=1), sleep=sleep)
    assert row[col.STATUS] == Status.FAILED_TO_DOWNLOAD
    assert "Timeout" in row[col.ERROR]
    assert server.hits["/slow-body"] == row[col.ATTEMPTS] == 2
    assert len(sleep.delays) == 1


def test_backoff_grows_exponentially_with_jitter(server) -> None:
    sleep = RecordingSleep()
    crawl([server.url("/503")], fast_config(retries=4, backoff_s=1.0), sleep=sleep)
    assert len(sleep.delays) == 4
    for attempt, delay in enumerate(sleep.delays, start=1):
        assert 0.5 * 2 ** (attempt - 1) <= delay < 1.5 * 2 ** (attempt - 1)
    assert len(set(sleep.delays)) == 4


def test_oversized_body_stops_reading(server) -> None:
    crawl([server.url("/huge-declared"), server.url("/huge-chunked")], fast_config())
    assert server.bytes_sent["/huge-declared"] < 64 << 20  # of 256 MiB offered
    assert server.bytes_sent["/huge-chunked"] < 64 << 20


def test_per_host_concurrency_is_capped(server) -> None:
    urls = [server.url(f"/hold?{i}") for i in range(8)]
    rows = crawl(urls, fast_config(concurrency=16, per_host_concurrency=2, total_timeout_s=10))
    assert all(r[col.STATUS] == Status.SUCCESS for r in rows)
    assert server.max_holding == 2


def test_invalid_urls_never_reach_the_network(server) -> None:
    urls = [None, "", "ftp://127.0.0.1/x.jpg", "not a url", "http:///nohost.jpg", "http://[::1",
            "http://127.0.0.1:99999/x.jpg", "http://127.0.0.1:port/x.jpg"]
    rows = crawl(urls, fast_config())
    assert [r[col.STATUS] for r in rows] == [Status.INVALID_URL] * len(urls), [r[col.ERROR] for r in rows]
    assert all(r[col.ATTEMPTS] == 1 for r in rows)
    assert server.total() == 0


MEMORY_PROBE = """
import json, resource, sys
from crawl_support import crawl, fast_config
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = crawl(sys.argv[1:], fast_config(max_bytes=2 << 20))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kib": after - before, "status": [r["status"] for r in rows]}))
"""


def test_memory_stays_flat_on_bomb_and_oversized_body(server) -> None:
    """In a fresh process, so the peak RSS belongs to these downloads alone."""
    assert len(bomb_png()) < 1 << 20  # the bomb is small on the wire (its decode would be ~400 MB)
    urls = [server.url(p) for p in ("/bomb.png", "/huge-chunked", "/huge-declared", "/gzip-bomb.jpg")]
    env = {"PYTHONPATH": f"{REPO}:{Path(__file__).parent}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *urls], capture_output=True, text=True,
                         env=env, timeout=60, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["status"] == [Status.DECOMPRESSION_BOMB] + [Status.TOO_LARGE] * 3
    assert probe["grew_kib"] < 48 * 1024, probe
