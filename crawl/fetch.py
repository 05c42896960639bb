"""URL -> original bytes + status, many requests in flight per worker.

Every outcome is a ``Fetched`` row: a dead host, a 404, a timeout, an opt-out header or an address
that must never be fetched are statuses, not exceptions.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from crawl.config import CrawlConfig
from manifests.schema import Status

RETRY_HTTP = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Fetched:
    status: str
    error: str | None = None
    data: bytes | None = None
    http_status: int | None = None
    attempts: int = 0


class BlockedAddress(OSError):
    """The host resolves to an address the SSRF guard refuses."""


def is_blocked_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
        or ip.is_unspecified or ip.is_reserved
    )


class GuardedResolver(AbstractResolver):
    """Resolves with a per-worker cache and refuses blocked addresses after resolution."""

    def __init__(self, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._cache: dict[tuple[str, int, int], list[ResolveResult]] = {}

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        key = (host, port, family)
        if key not in self._cache:
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
            results = []
            for fam, _, proto, _, sockaddr in infos:
                if not self._allow_private and is_blocked_ip(ipaddress.ip_address(sockaddr[0].split("%")[0])):
                    raise BlockedAddress(f"{host} resolves to blocked address {sockaddr[0]}")
                results.append(ResolveResult(hostname=host, host=sockaddr[0], port=sockaddr[1],
                                             family=fam, proto=proto, flags=socket.AI_NUMERICHOST))
            self._cache[key] = results
        return self._cache[key]

    async def close(self) -> None:
        self._cache.clear()


def _literal_blocked(host: str) -> bool:
    try:
        return is_blocked_ip(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return False


def robots_disallowed(header_values: Iterable[str], config: CrawlConfig) -> str | None:
    """The X-Robots-Tag directive that opts this image out, for any agent or for ours (img2dataset's rule)."""
    disallowed = {d.lower() for d in config.disallowed_header_directives}
    for value in header_values:
        for part in value.split(","):
            part = part.strip().lower()
            agent, sep, directives = part.partition(":")
            if sep and " " not in agent.strip() and agent.strip() not in {config.user_agent_token.lower(), "*"}:
                continue  # directive for another crawler
            for directive in (directives if sep else part).split():
                if directive.strip() in disallowed:
                    return directive.strip()
    return None


class Fetcher:
    """One aiohttp session per worker; call ``fetch_all`` with a list of URLs."""

    def __init__(self, config: CrawlConfig) -> None:
        self.config = config

    async def _fetch_all(self, urls: list[str | None]) -> list[Fetched]:
        cfg = self.config
        timeout = aiohttp.ClientTimeout(total=cfg.total_timeout_s, connect=cfg.connect_timeout_s,
                                        sock_read=cfg.read_timeout_s)
        connector = aiohttp.TCPConnector(limit=cfg.concurrency, limit_per_host=cfg.per_host_concurrency,
                                         resolver=GuardedResolver(cfg.allow_private_addresses), ssl=False)
        headers = {"User-Agent": f"Mozilla/5.0 (compatible; {cfg.user_agent_token}/0.1)"}
        gate = asyncio.Semaphore(cfg.concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                         auto_decompress=True) as session:
            async def one(url: str | None) -> Fetched:
                async with gate:
                    return await self._fetch_with_retries(session, url)
            return list(await asyncio.gather(*(one(u) for u in urls)))

    def fetch_all(self, urls: list[str | None]) -> list[Fetched]:
        return asyncio.run(self._fetch_all(urls))

    async def _fetch_with_retries(self, session: aiohttp.ClientSession, url: str | None) -> Fetched:
        attempt = 0
        while True:
            attempt += 1
            result, retry_after = await self._fetch_once(session, url)
            result = Fetched(result.status, result.error, result.data, result.http_status, attempt)
            if retry_after is None or attempt > self.config.retries:
                return result
            jitter = random.uniform(0, self.config.backoff_s)
            await asyncio.sleep(max(retry_after, self.config.backoff_s * 2 ** (attempt - 1)) + jitter)

    async def _fetch_once(self, session: aiohttp.ClientSession, url: str | None) -> tuple[Fetched, float | None]:
        """One attempt, following redirects by hand so that each hop passes the guard."""
        cfg = self.config
        if not url or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            return Fetched(Status.INVALID_URL, f"not an http(s) URL: {url!r}"), None
        seen = set()
        try:
            for _ in range(cfg.max_redirects + 1):
                host = urlsplit(url).hostname or ""
                if not cfg.allow_private_addresses and _literal_blocked(host):
                    return Fetched(Status.BLOCKED_ADDRESS, f"{host} is a blocked address"), None
                seen.add(url)
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        if url in seen:
                            return Fetched(Status.FAILED_TO_DOWNLOAD, "redirect loop", http_status=resp.status), None
                        continue
                    return await self._read(resp)
            return Fetched(Status.FAILED_TO_DOWNLOAD, f"more than {cfg.max_redirects} redirects"), None
        except BlockedAddress as exc:
            return Fetched(Status.BLOCKED_ADDRESS, str(exc)), None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, BlockedAddress):
                return Fetched(Status.BLOCKED_ADDRESS, str(exc.os_error)), None
            return Fetched(Status.FAILED_TO_DOWNLOAD, f"connect: {exc}"), 0.0
        except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            return Fetched(Status.FAILED_TO_DOWNLOAD, f"{type(exc).__name__}: {exc}"), 0.0

    async def _read(self, resp: aiohttp.ClientResponse) -> tuple[Fetched, float | None]:
        cfg = self.config
        if resp.status != 200:
            error = f"HTTP {resp.status}"
            if resp.status in RETRY_HTTP:
                return Fetched(Status.FAILED_TO_DOWNLOAD, error, http_status=resp.status), _retry_after(resp)
            return Fetched(Status.FAILED_TO_DOWNLOAD, error, http_status=resp.status), None
        directive = robots_disallowed(resp.headers.getall("X-Robots-Tag", []), cfg)
        if directive:
            return Fetched(Status.DISALLOWED_BY_ROBOTS, f"X-Robots-Tag: {directive}", http_status=200), None
        declared = resp.content_length
        if declared is not None and declared > cfg.max_bytes:
            return Fetched(Status.TOO_LARGE, f"Content-Length {declared} > max_bytes", http_status=200), None
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > cfg.max_bytes:
                return Fetched(Status.TOO_LARGE, f"body exceeds max_bytes={cfg.max_bytes}", http_status=200), None
            chunks.append(chunk)
        return Fetched(Status.SUCCESS, data=b"".join(chunks), http_status=200), None


def _retry_after(resp: aiohttp.ClientResponse) -> float:
    try:
        return min(60.0, max(0.0, float(resp.headers.get("Retry-After", "0"))))
    except ValueError:
        return 0.0


def group_by_host(urls: list[str]) -> dict[str, list[int]]:
    hosts: dict[str, list[int]] = defaultdict(list)
    for i, url in enumerate(urls):
        hosts[urlsplit(url).hostname or ""].append(i)
    return hosts
