"""Per-origin opt-outs, asked before every request: robots.txt, tdmrep.json and the Crawl-delay pacing.

One ``OriginGate`` lives as long as the worker's ``Fetcher`` (``origin_gate(fetcher)``), so each
origin's robots.txt and tdmrep.json are fetched once per worker and TTL, however many units and rows
ask: concurrent rows of one origin wait on the one fetch in flight. The site files go through the same
``Fetcher`` as images: the SSRF guard, timeouts and retries apply to them too.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from typing import Awaitable, Callable, Generic, TypeVar
from urllib.parse import urlsplit

import aiohttp

from crawl import robots, tdmrep
from crawl.fetch import Fetched, Fetcher

T = TypeVar("T")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class OriginCache(Generic[T]):
    """Values per origin with a TTL; a value being computed is awaited, never computed twice at once.

    A value ``is_transient`` says is kept ``transient_ttl_s`` at most: an unreachable robots.txt
    must not shut an origin out of a long-lived worker for a day. At most ``max_entries`` origins are
    kept (least recently stored first out), so a worker's memory does not grow with the run's origins.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 is_transient: Callable[[T], bool] = lambda value: False, transient_ttl_s: float = 60.0,
                 max_entries: int = 10_000) -> None:
        self.ttl_s, self._clock, self.max_entries = ttl_s, clock, max_entries
        self._is_transient, self._transient_ttl_s = is_transient, transient_ttl_s
        self._values: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[T]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self, origin: str, compute: Callable[[], Awaitable[T]]) -> T:
        hit = self._values.get(origin)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # each unit runs its own event loop: tasks of an old one are gone
            self._loop, self._pending = loop, {}
        task = self._pending.get(origin)
        if task is None:
            task = self._pending[origin] = asyncio.ensure_future(compute())
            task.add_done_callback(lambda t: self._store(origin, t))
        return await asyncio.shield(task)

    def _store(self, origin: str, task: asyncio.Task[T]) -> None:
        self._pending.pop(origin, None)
        if not task.cancelled() and task.exception() is None:
            value = task.result()
            ttl = min(self.ttl_s, self._transient_ttl_s) if self._is_transient(value) else self.ttl_s
            self._values[origin] = (self._clock() + ttl, value)
            self._values.move_to_end(origin)
            if len(self._values) > self.max_entries:
                self._values.popitem(last=False)


class HostPacer:
    """Spaces the requests to one origin by its Crawl-delay: each takes the next free slot."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next: dict[str, float] = {}

    async def wait(self, origin: str, delay: float) -> None:
        now = self._clock()
        slot = max(now, self._next.get(origin, now))
        self._next[origin] = slot + delay
        if len(self._next) > 10_000:  # forget origins whose next slot has passed: they would wait for nothing
            self._next = {o: t for o, t in self._next.items() if t > now}
        if slot > now:
            await asyncio.sleep(slot - now)


class OriginGate:
    """``admit(session, url)``: the row that stops a request (robots.txt, tdmrep.json), or None after pacing."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher, self.config = fetcher, fetcher.config
        self.robots: OriginCache[robots.RobotsRules] = OriginCache(
            self.config.robots_txt.ttl_s, is_transient=lambda rules: rules.transient)
        self.tdm: OriginCache[tuple[tdmrep.TdmRule, ...]] = OriginCache(self.config.tdmrep.ttl_s)
        self.pacer = HostPacer()

    @property
    def active(self) -> bool:
        return self.config.robots_txt.enabled or self.config.tdmrep.enabled

    async def admit(self, session: aiohttp.ClientSession, url: str) -> Fetched | None:
        origin = origin_of(url)
        if self.config.robots_txt.enabled:
            rules = await self.robots.get(origin, lambda: self._robots(session, origin))
            refused = robots.verdict(rules, url, self.config)
            if refused is not None:
                return refused
            delay = rules.crawl_delay(self.config.user_agent_token)
            if delay:
                await self.pacer.wait(origin, delay)
        if self.config.tdmrep.enabled:
            rules_tdm = await self.tdm.get(origin, lambda: self._tdmrep(session, origin))
            return tdmrep.verdict(rules_tdm, url)
        return None

    async def _robots(self, session: aiohttp.ClientSession, origin: str) -> robots.RobotsRules:
        fetched = await self.fetcher.fetch(session, f"{origin}/robots.txt", resource=True)
        return robots.rules_from(fetched, self.config)

    async def _tdmrep(self, session: aiohttp.ClientSession, origin: str) -> tuple[tdmrep.TdmRule, ...]:
        return tdmrep.rules_from(await self.fetcher.fetch(session, f"{origin}/.well-known/tdmrep.json", resource=True))


_GATES: weakref.WeakKeyDictionary[Fetcher, OriginGate] = weakref.WeakKeyDictionary()


def origin_gate(fetcher: Fetcher) -> OriginGate:
    """The gate of this fetcher (one per worker, like the fetcher's DNS cache)."""
    gate = _GATES.get(fetcher)
    if gate is None:
        gate = _GATES[fetcher] = OriginGate(fetcher)
    return gate
