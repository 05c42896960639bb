"""URL -> original bytes + status, many requests in flight per worker.

Every outcome is a ``Fetched`` row: a dead host, a 404, a timeout, an opt-out header or an address
that must never be fetched are statuses, not exceptions. Retries (exponential backoff with jitter,
at least what ``Retry-After`` asks) happen on timeouts, connection errors, 408, 429 and 5xx only.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from crawl.config import CrawlConfig
from crawl.guard import (AddressPolicy, BlockedAddress, GuardedResolver, SocketOpener, default_open_socket,
                         guarded_socket_factory, literal_ip)
from manifests.schema import Status

REDIRECTS = frozenset({301, 302, 303, 307, 308})
Sleep = Callable[[float], Awaitable[None]]
# Asked before every hop (the first and each redirect): a Fetched to stop there (robots.txt, TDMRep), or None.
Admit = Callable[[aiohttp.ClientSession, str], Awaitable["Fetched | None"]]


@dataclass(frozen=True)
class Fetched:
    status: str
    error: str | None = None
    data: bytes | None = None
    http_status: int | None = None
    attempts: int = 0
    tdm_policy: str | None = None  # TDMRep policy URL when the resource reserves TDM rights


@dataclass(frozen=True)
class Attempt:
    """One try's outcome; ``retry_in`` is None when trying again cannot help, else the least wait in seconds."""

    fetched: Fetched
    retry_in: float | None = None


def is_retryable_http(code: int) -> bool:
    return code in (408, 429) or 500 <= code <= 599


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


def tdm_reserved(headers: Mapping[str, str]) -> Fetched | None:
    """A ``tdm-reservation: 1`` response header (W3C TDMRep): rights reserved, read no further."""
    if headers.get("tdm-reservation", "").strip() != "1":
        return None
    return Fetched(Status.DISALLOWED_BY_TDMREP, "tdm-reservation: 1 (response header)",
                   tdm_policy=headers.get("tdm-policy") or None)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); 0 when absent or garbled."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class Fetcher:
    """Fetches URLs for one worker. Build it once per worker: its DNS cache outlives each session.

    ``resolver`` and ``open_socket`` are the network seams (a stub resolver in tests, a socket opener
    that fails the test if reached); ``policy`` defaults to the config's allow flag; ``sleep`` lets a
    test record the backoff instead of waiting for it.
    """

    def __init__(self, config: CrawlConfig, *, policy: AddressPolicy | None = None,
                 resolver: AbstractResolver | None = None, open_socket: SocketOpener = default_open_socket,
                 sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> None:
        self.config = config
        self.policy = policy or AddressPolicy(allow_private=config.allow_private_addresses)
        self.resolver = GuardedResolver(self.policy, resolver, ttl_s=config.dns_cache_ttl_s)
        self._open_socket, self._sleep, self._rng = open_socket, sleep, rng or random.Random()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[aiohttp.ClientSession]:
        """One session (connection pool, per-host cap) for the current event loop."""
        cfg = self.config
        timeout = aiohttp.ClientTimeout(total=cfg.total_timeout_s, sock_connect=cfg.connect_timeout_s,
                                        sock_read=cfg.read_timeout_s)
        connector = aiohttp.TCPConnector(
            limit=cfg.concurrency, limit_per_host=cfg.per_host_concurrency, resolver=_Unclosed(self.resolver),
            use_dns_cache=False, ssl=cfg.verify_tls, socket_factory=guarded_socket_factory(self.policy, self._open_socket))
        headers = {"User-Agent": f"Mozilla/5.0 (compatible; {cfg.user_agent_token}/0.1)"}
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
            yield session

    async def fetch(self, session: aiohttp.ClientSession, url: str | None, *, admit: Admit | None = None,
                    resource: bool = False) -> Fetched:
        """Fetch with retries; ``attempts`` counts every try.

        ``admit`` is asked before every hop (per-origin opt-outs); ``resource`` fetches a site file
        (robots.txt, tdmrep.json): no opt-out headers apply and the robots.txt size limit does.
        """
        cfg, attempt = self.config, 0
        while True:
            attempt += 1
            outcome = await self._fetch_once(session, url, admit, resource)
            fetched = replace(outcome.fetched, attempts=attempt)
            if outcome.retry_in is None or attempt > cfg.retries:
                return fetched
            if outcome.retry_in > cfg.max_retry_after_s:
                return replace(fetched, error=f"{fetched.error}; Retry-After {outcome.retry_in:.0f}s "
                                              f"exceeds max_retry_after_s={cfg.max_retry_after_s}")
            await self._sleep(max(outcome.retry_in, self.backoff(attempt)))

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^(attempt-1), scaled by a random factor in [0.5, 1.5)."""
        base = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** (attempt - 1))
        return base * (0.5 + self._rng.random())

    async def _fetch_once(self, session: aiohttp.ClientSession, url: str | None, admit: Admit | None = None,
                          resource: bool = False) -> Attempt:
        """One try, following redirects by hand so that every hop passes the guard."""
        invalid = _invalid_url(url)
        if invalid:
            return Attempt(Fetched(Status.INVALID_URL, invalid))
        seen: set[str] = set()
        try:
            for _ in range(self.config.max_redirects + 1):
                self._check_literal(url)
                seen.add(url)
                refused = await admit(session, url) if admit is not None else None
                if refused is not None:
                    return Attempt(refused)
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status not in REDIRECTS or "Location" not in resp.headers:
                        return await self._read(resp, resource)
                    url = urljoin(url, resp.headers["Location"])
                    if url in seen:
                        return Attempt(Fetched(Status.FAILED_TO_DOWNLOAD, f"redirect loop at {url}", None, resp.status))
                    invalid = _invalid_url(url)
                    if invalid:
                        return Attempt(Fetched(Status.INVALID_URL, f"redirect to {invalid}", None, resp.status))
            return Attempt(Fetched(Status.FAILED_TO_DOWNLOAD, f"more than max_redirects={self.config.max_redirects}"))
        except BlockedAddress as exc:
            return Attempt(Fetched(Status.BLOCKED_ADDRESS, str(exc)))
        except (aiohttp.InvalidURL, ValueError) as exc:  # yarl and the request builder reject what urlsplit let by
            return Attempt(Fetched(Status.INVALID_URL, f"{type(exc).__name__}: {exc}"))
        except aiohttp.ClientConnectorError as exc:
            if _blocked_cause(exc):
                return Attempt(Fetched(Status.BLOCKED_ADDRESS, str(exc.os_error)))
            return Attempt(Fetched(Status.FAILED_TO_DOWNLOAD, f"connect: {exc}"), 0.0)
        except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            return Attempt(Fetched(Status.FAILED_TO_DOWNLOAD, f"{type(exc).__name__}: {exc}".rstrip(": ")), 0.0)

    def _check_literal(self, url: str) -> None:
        parts = urlsplit(url)
        ip = literal_ip(parts.hostname or "")
        if ip is not None:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self.policy.check(parts.hostname or "", ip, port)

    async def _read(self, resp: aiohttp.ClientResponse, resource: bool = False) -> Attempt:
        cfg = self.config
        max_bytes = cfg.robots_txt.max_bytes if resource else cfg.max_bytes
        if not 200 <= resp.status < 300:
            failed = Fetched(Status.FAILED_TO_DOWNLOAD, f"HTTP {resp.status}", None, resp.status)
            if is_retryable_http(resp.status):
                return Attempt(failed, parse_retry_after(resp.headers.get("Retry-After")))
            return Attempt(failed)
        directive = None if resource else robots_disallowed(resp.headers.getall("X-Robots-Tag", []), cfg)
        if directive:
            return Attempt(Fetched(Status.DISALLOWED_BY_ROBOTS, f"X-Robots-Tag: {directive}", None, resp.status))
        reserved = tdm_reserved(resp.headers) if cfg.tdmrep.enabled and not resource else None
        if reserved is not None:
            return Attempt(replace(reserved, http_status=resp.status))
        if resp.content_length is not None and resp.content_length > max_bytes:
            error = f"Content-Length {resp.content_length} > max_bytes"
            return Attempt(Fetched(Status.TOO_LARGE, error, None, resp.status))
        body = bytearray()
        async for chunk in resp.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > max_bytes:
                return Attempt(Fetched(Status.TOO_LARGE, f"body exceeds max_bytes={max_bytes}", None, resp.status))
        return Attempt(Fetched(Status.SUCCESS, None, bytes(body), resp.status))


def _invalid_url(url: str | None) -> str | None:
    try:
        parts = urlsplit(url or "")
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number in range
    except ValueError as exc:
        return f"malformed URL {url!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"not an http(s) URL: {url!r}"
    return None


def _blocked_cause(exc: aiohttp.ClientConnectorError) -> bool:
    """A BlockedAddress raised by the socket factory, possibly inside happy eyeballs' combined error."""
    cause = exc.os_error
    return isinstance(cause, BlockedAddress) or "blocked address" in str(cause)


class _Unclosed(AbstractResolver):
    """Lends the worker's resolver to one session: closing the session must not close the shared cache."""

    def __init__(self, inner: AbstractResolver) -> None:
        self.inner = inner

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list:
        return await self.inner.resolve(host, port, family)

    async def close(self) -> None:
        pass
