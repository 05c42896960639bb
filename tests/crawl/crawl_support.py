"""Fixtures for the crawl tests: loopback fault servers, a fast config and a Fetcher that records its backoff."""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from crawl.config import CrawlConfig
from crawl.fetch import Fetcher
from crawl.guard import AddressPolicy
from crawl.ingest import crawl_rows
from manifests import schema as col
from faultserver import FaultServer


@pytest.fixture(scope="session")
def _server_a() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture(scope="session")
def _server_b() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.fixture
def server(_server_a: FaultServer) -> FaultServer:
    _server_a.reset()
    return _server_a


@pytest.fixture
def other_server(_server_b: FaultServer) -> FaultServer:
    _server_b.reset()
    return _server_b


def fast_config(**overrides) -> CrawlConfig:
    """Short timeouts so the slow routes fail fast; loopback allowed unless a test says otherwise."""
    values = dict(allow_private_addresses=True, connect_timeout_s=1.0, read_timeout_s=1.0, total_timeout_s=5.0,
                  retries=2, backoff_s=0.2, max_bytes=1 << 20, image_size=64)
    values.update(overrides)
    return CrawlConfig(**values)


class RecordingSleep:
    """Stands in for asyncio.sleep: records each backoff and yields without waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def crawl(urls: list[str | None], config: CrawlConfig, **fetcher_args) -> list[dict]:
    """Manifest rows for ``urls`` through the real fetch + stage path."""
    rows = [{col.SAMPLE_ID: f"{i:04d}", col.URL: url, col.CAPTION: None} for i, url in enumerate(urls)]
    fetcher = Fetcher(config, **fetcher_args)
    return [record for record, _ in asyncio.run(crawl_rows(rows, fetcher, config))]


def only_port(server: FaultServer) -> AddressPolicy:
    """Blocks private addresses except exactly this server's 127.0.0.1 port."""
    return AddressPolicy(allow_private=False, exempt=frozenset({("127.0.0.1", server.port)}))
