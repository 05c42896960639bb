"""The SSRF guard, tested without one packet to a non-loopback address.

Loopback spellings go at the real fault server with the allow flag off: each must be refused and the
server must see nothing. Private, link-local and metadata ranges go through a stub resolver, and the
socket opener is a stub that records the call and refuses: reaching it for a blocked address fails
the test, and no socket is ever created for one.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from crawl_support import crawl, fast_config, only_port

from crawl.guard import AddressPolicy, is_blocked_ip, literal_ip
from manifests import schema as col
from manifests.schema import Status

LOOPBACK_SPELLINGS = ["localhost", "127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1",
                      "127.0.0.2", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "LOCALHOST"]


class StubResolver(AbstractResolver):
    """Answers from a table, like a hostile DNS server could."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table, self.asked = table, []

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"stub: no such host {host}")
        return [ResolveResult(hostname=host, host=ip, port=port,
                              family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST) for ip in self.table[host]]

    async def close(self) -> None:
        pass


class ForbiddenConnect:
    """The connect step: records what it was asked to open and never opens anything."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, addr_info: tuple) -> socket.socket:
        self.calls.append(addr_info[4])
        raise OSError("stub connect: no packets leave this test")


def test_loopback_in_every_spelling_is_refused(server) -> None:
    connect = ForbiddenConnect()
    urls = [f"http://{host}:{server.port}/ok.jpg" for host in LOOPBACK_SPELLINGS]
    rows = crawl(urls, fast_config(allow_private_addresses=False), open_socket=connect)
    assert [r[col.STATUS] for r in rows] == [Status.BLOCKED_ADDRESS] * len(urls), [r[col.ERROR] for r in rows]
    assert all(r[col.ATTEMPTS] == 1 for r in rows)  # a refusal is final, never retried
    assert server.total() == 0
    assert connect.calls == []


def test_the_same_urls_pass_with_the_allow_flag(server) -> None:
    rows = crawl([f"http://{h}:{server.port}/ok.jpg" for h in ("localhost", "127.0.0.1")], fast_config())
    assert [r[col.STATUS] for r in rows] == [Status.SUCCESS] * 2
    assert server.hits["/ok.jpg"] == 2


def test_redirect_from_an_allowed_host_to_loopback_is_refused(server, other_server) -> None:
    """Server A is the one exempt port; its redirects to B (any spelling) or to a metadata IP are refused."""
    targets = [other_server.url("/ok.jpg"), other_server.url("/ok.jpg", host="localhost"),
               f"http://2130706433:{other_server.port}/ok.jpg", "http://169.254.169.254/latest/meta-data/"]
    urls = [server.url(f"/to?target={t}") for t in targets] + [server.url(f"/to?target={server.url('/ok.jpg')}")]
    rows = crawl(urls, fast_config(allow_private_addresses=False), policy=only_port(server))
    assert [r[col.STATUS] for r in rows] == [Status.BLOCKED_ADDRESS] * 4 + [Status.SUCCESS]
    assert server.hits["/to"] == 5 and server.hits["/ok.jpg"] == 1  # the redirect to A itself is followed
    assert other_server.total() == 0


PRIVATE_NAMES = {
    "rfc1918-10.example": ["10.0.0.5"],
    "rfc1918-172.example": ["172.16.3.4"],
    "rfc1918-192.example": ["192.168.1.1"],
    "metadata.example": ["169.254.169.254"],
    "alibaba-metadata.example": ["100.100.100.200"],
    "aws-v6-metadata.example": ["fd00:ec2::254"],
    "link-local6.example": ["fe80::1"],
    "ula.example": ["fc00::7"],
    "multicast.example": ["224.0.0.1"],
    "multicast6.example": ["ff02::1"],
    "unspecified.example": ["0.0.0.0"],
    "unspecified6.example": ["::"],
    "broadcast.example": ["255.255.255.255"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "6to4-private.example": ["2002:a00:1::"],
    "rebinding.example": ["93.184.216.34", "10.0.0.1"],  # one public, one private: refused as a whole
    "loopback.example": ["127.0.0.1"],
}


def test_private_link_local_and_metadata_ranges_never_reach_connect() -> None:
    resolver, connect = StubResolver(PRIVATE_NAMES), ForbiddenConnect()
    urls = [f"http://{name}/img.jpg" for name in PRIVATE_NAMES]
    rows = crawl(urls, fast_config(allow_private_addresses=False), resolver=resolver, open_socket=connect)
    assert [r[col.STATUS] for r in rows] == [Status.BLOCKED_ADDRESS] * len(urls), [r[col.ERROR] for r in rows]
    assert connect.calls == []
    assert set(resolver.asked) == set(PRIVATE_NAMES)


@pytest.mark.parametrize("host", ["10.0.0.1", "169.254.169.254", "[fe80::1]", "[fd00:ec2::254]", "0.0.0.0",
                                  "[::]", "100.64.0.1", "0xa9fea9fe", "[2002:7f00:1::]"])
def test_private_literals_are_refused_before_any_lookup(host: str) -> None:
    resolver, connect = StubResolver({}), ForbiddenConnect()
    [row] = crawl([f"http://{host}/latest/meta-data/"], fast_config(allow_private_addresses=False),
                  resolver=resolver, open_socket=connect)
    assert row[col.STATUS] == Status.BLOCKED_ADDRESS
    assert connect.calls == [] and resolver.asked == []


def test_a_public_address_does_reach_connect() -> None:
    """The stub connect is really wired in: a public answer gets to it (and it refuses, so no packet)."""
    resolver, connect = StubResolver({"public.example": ["93.184.216.34"]}), ForbiddenConnect()
    [row] = crawl(["http://public.example/img.jpg"], fast_config(allow_private_addresses=False, retries=0),
                  resolver=resolver, open_socket=connect)
    assert row[col.STATUS] == Status.FAILED_TO_DOWNLOAD
    assert connect.calls == [("93.184.216.34", 80)]


def test_dns_answers_are_cached_per_worker() -> None:
    resolver = StubResolver({"metadata.example": ["169.254.169.254"]})
    rows = crawl([f"http://metadata.example/{i}.jpg" for i in range(5)], fast_config(allow_private_addresses=False),
                 resolver=resolver, open_socket=ForbiddenConnect())
    assert {r[col.STATUS] for r in rows} == {Status.BLOCKED_ADDRESS}
    assert resolver.asked == ["metadata.example"]


def test_guard_classification() -> None:
    blocked = ["127.0.0.1", "10.1.2.3", "169.254.169.254", "100.64.0.1", "224.0.0.1", "0.0.0.0",
               "::1", "fe80::1", "fd00:ec2::254", "ff02::1", "::ffff:127.0.0.1", "2002:a9fe:a9fe::", "240.0.0.1"]
    public = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34"]
    assert all(is_blocked_ip(ipaddress.ip_address(a)) for a in blocked)
    assert not any(is_blocked_ip(ipaddress.ip_address(a)) for a in public)
    assert literal_ip("127.1") == literal_ip("2130706433") == literal_ip("0x7f000001") == literal_ip("0177.0.0.1")
    assert literal_ip("127.1") == ipaddress.ip_address("127.0.0.1")
    assert literal_ip("example.com") is None and literal_ip("1.2.3.4.5") is None
    policy = AddressPolicy(exempt=frozenset({("127.0.0.1", 8080)}))
    assert policy.allows(ipaddress.ip_address("127.0.0.1"), 8080)
    assert not policy.allows(ipaddress.ip_address("127.0.0.1"), 8081)
