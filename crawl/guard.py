"""The SSRF guard and the per-worker DNS cache.

An address is checked three times: the URL's literal host before anything is sent (every legacy
IPv4 spelling included: ``127.1``, ``2130706433``, ``0x7f000001``), every address a name resolves
to, and the address of every socket just before it is created, which is the check that no code path
(a literal IP that skips DNS, a redirect) can get around. Resolving and connecting are seams: tests
pass a stub resolver and a socket opener that fails if it is ever reached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from aiohttp.abc import AbstractResolver, ResolveResult

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
SocketOpener = Callable[[tuple], socket.socket]  # aiohappyeyeballs' AddrInfoType -> socket
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)


class BlockedAddress(OSError):
    """The host is, or resolves to, an address the SSRF guard refuses."""


def is_blocked_ip(ip: IP) -> bool:
    """Loopback, private, link-local (cloud metadata), shared, multicast, unspecified or reserved."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
            return is_blocked_ip(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and is_blocked_ip(embedded):
            return True
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def literal_ip(host: str) -> IP | None:
    """The address a URL host denotes without DNS, legacy IPv4 forms (what inet_aton accepts) included."""
    host = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which (address, port) pairs may be fetched. ``exempt`` lets a test open exactly one loopback port."""

    allow_private: bool = False
    exempt: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    def allows(self, ip: IP, port: int | None = None) -> bool:
        if self.allow_private or (str(ip), port) in self.exempt:
            return True
        return not is_blocked_ip(ip)

    def check(self, host: str, ip: IP, port: int | None) -> None:
        if not self.allows(ip, port):
            raise BlockedAddress(f"{host} is the blocked address {ip}")


class SystemResolver(AbstractResolver):
    """getaddrinfo in the loop's thread pool: no packets for literal names and /etc/hosts entries."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        return [ResolveResult(hostname=host, host=sockaddr[0], port=sockaddr[1], family=fam, proto=proto,
                              flags=socket.AI_NUMERICHOST) for fam, _, proto, _, sockaddr in infos]

    async def close(self) -> None:
        pass


class GuardedResolver(AbstractResolver):
    """A bounded TTL cache in front of ``inner`` that refuses a name if any of its addresses is blocked.

    One instance lives as long as the worker's Fetcher, so every unit a worker stages shares the
    cache. Failed lookups are cached too: a dead host in a URL list is asked about once per TTL.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None,
                 ttl_s: float = 300.0, max_entries: int = 65_536) -> None:
        self.policy, self.inner = policy, inner or SystemResolver()
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._cache: OrderedDict[tuple[str, int, int], tuple[float, list[ResolveResult] | OSError]] = OrderedDict()
        self.lookups = 0

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        key = (host, port, family)
        hit = self._cache.get(key)
        if hit is None or hit[0] < time.monotonic():
            found = await self._lookup(host, port, family)
            ttl = min(self.ttl_s, 30.0) if isinstance(found, OSError) else self.ttl_s  # DNS errors can be transient
            hit = (time.monotonic() + ttl, found)
            self._cache[key] = hit
            if len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        if isinstance(hit[1], OSError):
            raise hit[1]
        return hit[1]

    async def _lookup(self, host: str, port: int, family: int) -> list[ResolveResult] | OSError:
        self.lookups += 1
        try:
            results = await self.inner.resolve(host, port, family)
        except OSError as exc:
            return exc
        try:
            for result in results:
                self.policy.check(host, ipaddress.ip_address(result["host"].split("%")[0]), port)
        except BlockedAddress as exc:
            return exc
        return results

    async def close(self) -> None:
        await self.inner.close()


def default_open_socket(addr_info: tuple) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def guarded_socket_factory(policy: AddressPolicy, open_socket: SocketOpener) -> SocketOpener:
    """The last check before a socket exists: its destination must pass the policy."""

    def factory(addr_info: tuple) -> socket.socket:
        sockaddr = addr_info[4]
        policy.check(str(sockaddr[0]), ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), sockaddr[1])
        return open_socket(addr_info)

    return factory
