"""robots.txt and TDMRep: each origin variant lands on its status, site files are fetched once per origin
per worker, Crawl-delay spaces the requests, and the SSRF guard covers the site files too."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import ExitStack

import pytest
from crawl_support import crawl, fast_config, only_port
from siteserver import Answer, Site, SiteSpec

from crawl import robots, tdmrep
from crawl.fetch import Fetched, Fetcher
from crawl.ingest import crawl_rows
from manifests import schema as col
from manifests.schema import Status

DISALLOW_OURS = b"User-agent: thresher\nDisallow: /img/private/\n\nUser-agent: *\nAllow: /\n"
DISALLOW_GPTBOT = b"User-agent: GPTBot\nDisallow: /img/\n"
TDMREP = json.dumps([
    {"location": "/img/open/*", "tdm-reservation": 0},
    {"location": "/img/reserved/*", "tdm-reservation": 1, "tdm-policy": "https://site.test/policy.json"},
]).encode()

# variant -> (site spec, image path, expected status)
VARIANTS = {
    "allow": (SiteSpec(robots=Answer(200, b"User-agent: *\nDisallow: /admin/\n")), "/img/a.jpg", Status.SUCCESS),
    "disallow_ours": (SiteSpec(robots=Answer(200, DISALLOW_OURS)), "/img/private/a.jpg",
                      Status.DISALLOWED_BY_ROBOTS_TXT),
    "ours_elsewhere_allowed": (SiteSpec(robots=Answer(200, DISALLOW_OURS)), "/img/public/a.jpg", Status.SUCCESS),
    "disallow_ai_token": (SiteSpec(robots=Answer(200, DISALLOW_GPTBOT)), "/img/a.jpg",
                          Status.DISALLOWED_BY_ROBOTS_TXT),
    "robots_404": (SiteSpec(robots=Answer(404)), "/img/a.jpg", Status.SUCCESS),
    "robots_500": (SiteSpec(robots=Answer(500)), "/img/a.jpg", Status.DISALLOWED_BY_ROBOTS_TXT),
    "robots_slow": (SiteSpec(robots=Answer(200, b"", delay_s=1.0)), "/img/a.jpg", Status.FAILED_TO_DOWNLOAD),
    "robots_redirect": (SiteSpec(robots=Answer(location="/robots-moved.txt", body=b"User-agent: *\nDisallow: /img/\n")),
                        "/img/a.jpg", Status.DISALLOWED_BY_ROBOTS_TXT),
    "tdm_header": (SiteSpec(image_headers={"/img/a.jpg": {"tdm-reservation": "1",
                                                          "tdm-policy": "https://site.test/p"}}),
                   "/img/a.jpg", Status.DISALLOWED_BY_TDMREP),
    "tdm_header_zero": (SiteSpec(image_headers={"/img/a.jpg": {"tdm-reservation": "0"}}), "/img/a.jpg", Status.SUCCESS),
    "tdmrep_json_reserved": (SiteSpec(tdmrep=Answer(200, TDMREP)), "/img/reserved/a.jpg", Status.DISALLOWED_BY_TDMREP),
    "tdmrep_json_open": (SiteSpec(tdmrep=Answer(200, TDMREP)), "/img/open/a.jpg", Status.SUCCESS),
    "tdmrep_json_malformed": (SiteSpec(tdmrep=Answer(200, b"{not json")), "/img/a.jpg", Status.SUCCESS),
    "x_robots_noml": (SiteSpec(image_headers={"/img/a.jpg": {"X-Robots-Tag": "noml"}}), "/img/a.jpg",
                      Status.DISALLOWED_BY_ROBOTS),
}


@pytest.fixture(scope="module")
def variant_rows() -> dict:
    """Every variant on its own origin, three URLs per origin, crawled together by one worker's Fetcher."""
    with ExitStack() as stack:
        sites = {name: stack.enter_context(Site(spec)) for name, (spec, _, _) in VARIANTS.items()}
        urls = [sites[name].url(path) for name, (_, path, _) in VARIANTS.items() for _ in range(3)]
        config = fast_config(retries=0, read_timeout_s=0.5, concurrency=16)
        rows = crawl(urls, config)
        return {"rows": rows, "sites": sites}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_lands_on_its_status(variant_rows: dict, variant: str) -> None:
    index = list(VARIANTS).index(variant)
    expected = VARIANTS[variant][2]
    for row in variant_rows["rows"][3 * index: 3 * index + 3]:
        assert row[col.STATUS] == expected, (variant, row[col.ERROR])
        if expected != Status.SUCCESS:
            assert row[col.ERROR]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_site_files_are_fetched_once_per_origin(variant_rows: dict, variant: str) -> None:
    site = variant_rows["sites"][variant]
    assert site.hits["/robots.txt"] == 1
    # tdmrep.json is asked for only once robots.txt lets a URL of the origin through
    robots_refused = VARIANTS[variant][2] in (Status.DISALLOWED_BY_ROBOTS_TXT, Status.FAILED_TO_DOWNLOAD)
    assert site.hits["/.well-known/tdmrep.json"] == (0 if robots_refused else 1)


def test_disallowed_urls_are_never_requested(variant_rows: dict) -> None:
    for name in ("disallow_ours", "disallow_ai_token", "robots_500", "robots_slow", "robots_redirect",
                 "tdmrep_json_reserved"):
        assert not [p for p in variant_rows["sites"][name].hits if p.startswith("/img/")], name


def test_error_names_the_agent_and_the_rule(variant_rows: dict) -> None:
    rows = {name: variant_rows["rows"][3 * i] for i, name in enumerate(VARIANTS)}
    assert rows["disallow_ours"][col.ERROR] == "robots.txt disallows thresher: User-agent: thresher / Disallow: /img/private/"
    assert rows["disallow_ai_token"][col.ERROR] == "robots.txt disallows GPTBot: User-agent: gptbot / Disallow: /img/"
    assert "HTTP 500" in rows["robots_500"][col.ERROR]
    assert rows["tdm_header"][col.TDM_POLICY] == "https://site.test/p"
    assert rows["tdmrep_json_reserved"][col.TDM_POLICY] == "https://site.test/policy.json"
    assert rows["x_robots_noml"][col.ERROR] == "X-Robots-Tag: noml"


def test_robots_txt_is_cached_across_units_of_one_worker() -> None:
    """Two units (two event loops) through one worker's Fetcher: one robots.txt request in all."""
    with Site(SiteSpec(robots=Answer(200, DISALLOW_OURS))) as site:
        config = fast_config()
        fetcher = Fetcher(config)
        for unit in range(2):
            rows = [{col.SAMPLE_ID: f"{unit}{i}", col.URL: site.url(f"/img/{unit}-{i}.jpg")} for i in range(4)]
            outcomes = asyncio.run(crawl_rows(rows, fetcher, config))
            assert all(r[col.STATUS] == Status.SUCCESS for r, _ in outcomes)
        assert site.hits["/robots.txt"] == 1 and site.hits["/.well-known/tdmrep.json"] == 1


def test_on_unreachable_allow_relaxes_rfc_9309() -> None:
    with Site(SiteSpec(robots=Answer(503))) as site:
        [row] = crawl([site.url("/img/a.jpg")], fast_config(retries=0, robots_txt={"on_unreachable": "allow"}))
    assert row[col.STATUS] == Status.SUCCESS


def test_crawl_delay_spaces_requests_to_the_origin() -> None:
    with Site(SiteSpec(robots=Answer(200, b"User-agent: *\nCrawl-delay: 0.3\n"))) as site:
        crawl([site.url(f"/img/{i}.jpg") for i in range(4)], fast_config(concurrency=8))
        times = sorted(t for p, ts in site.arrivals.items() if p.startswith("/img/") for t in ts)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 4 and min(gaps) >= 0.25, gaps


def test_crawl_delay_above_the_limit_skips_the_origin() -> None:
    with Site(SiteSpec(robots=Answer(200, b"User-agent: *\nCrawl-delay: 3600\n"))) as site:
        [row] = crawl([site.url("/img/a.jpg")], fast_config())
    assert row[col.STATUS] == Status.DISALLOWED_BY_ROBOTS_TXT and "Crawl-delay" in row[col.ERROR]
    assert site.hits["/img/a.jpg"] == 0


def test_ssrf_guard_covers_robots_txt() -> None:
    """A name resolving to loopback: the guard refuses robots.txt before the image, and nothing is sent."""
    from test_crawl_ssrf import StubResolver

    with Site(SiteSpec(robots=Answer(200, b""))) as site:
        resolver = StubResolver({"site.test": ["127.0.0.1"]})
        [row] = crawl([f"http://site.test:{site.port}/img/a.jpg"], fast_config(allow_private_addresses=False),
                      resolver=resolver)
        assert sum(site.hits.values()) == 0 and resolver.asked == ["site.test"]
    assert row[col.STATUS] == Status.BLOCKED_ADDRESS and row[col.ERROR].startswith("robots.txt:"), row[col.ERROR]


def test_robots_txt_redirect_to_a_blocked_address_is_refused() -> None:
    """The image's origin is allowed, but its robots.txt redirects to another loopback port the policy blocks."""
    with Site(SiteSpec()) as other, Site(SiteSpec(robots=Answer(location=other.url("/robots.txt")))) as site:
        [row] = crawl([site.url("/img/a.jpg")], fast_config(), policy=only_port(site))
        assert other.hits["/robots.txt"] == 0 and site.hits["/img/a.jpg"] == 0
    assert row[col.STATUS] == Status.BLOCKED_ADDRESS


def test_robots_can_be_switched_off() -> None:
    with Site(SiteSpec(robots=Answer(200, b"User-agent: *\nDisallow: /\n"))) as site:
        [row] = crawl([site.url("/img/a.jpg")], fast_config(robots_txt={"enabled": False}, tdmrep={"enabled": False}))
        assert site.hits["/robots.txt"] == 0 and site.hits["/.well-known/tdmrep.json"] == 0
    assert row[col.STATUS] == Status.SUCCESS


# --- pure functions ---------------------------------------------------------------------------------

def test_rules_from_follows_rfc_9309_status_classes() -> None:
    config = fast_config()
    assert robots.rules_from(Fetched(Status.FAILED_TO_DOWNLOAD, "HTTP 403", http_status=403), config).deny_all is None
    assert robots.rules_from(Fetched(Status.FAILED_TO_DOWNLOAD, "HTTP 429", http_status=429), config).deny_all
    assert robots.rules_from(Fetched(Status.FAILED_TO_DOWNLOAD, "HTTP 502", http_status=502), config).deny_all
    blocked = robots.rules_from(Fetched(Status.BLOCKED_ADDRESS, "10.0.0.1"), config)
    assert robots.verdict(blocked, "http://h/x", config).status == Status.BLOCKED_ADDRESS


def test_every_honoured_agent_is_checked() -> None:
    config = fast_config()
    for agent in config.robots_txt.honoured_agents:
        rules = robots.rules_from(Fetched(Status.SUCCESS, data=f"User-agent: {agent}\nDisallow: /\n".encode()), config)
        refused = robots.verdict(rules, "http://h/img.jpg", config)
        assert refused is not None and agent in refused.error


@pytest.mark.parametrize("location,path,matches", [
    ("/", "/a/b.jpg", True), ("/img/*.png", "/img/x.png", True), ("/img/*.png$", "/img/x.png?v=1", False),
    ("/img/", "/other/img/", False), ("*", "/anything", True), ("/a$", "/a", True), ("/a$", "/ab", False),
])
def test_tdmrep_locations_use_robots_patterns(location: str, path: str, matches: bool) -> None:
    rules = tdmrep.parse_rules(json.dumps([{"location": location, "tdm-reservation": 1}]).encode())
    assert (tdmrep.verdict(rules, f"http://h{path}") is not None) is matches


def test_tdmrep_first_matching_rule_wins_and_junk_is_skipped() -> None:
    body = json.dumps([{"location": "/a/open/*", "tdm-reservation": 0}, {"bad": 1}, "junk",
                       {"location": "/a/*", "tdm-reservation": 1}]).encode()
    rules = tdmrep.parse_rules(body)
    assert len(rules) == 2
    assert tdmrep.verdict(rules, "http://h/a/open/x.jpg") is None
    assert tdmrep.verdict(rules, "http://h/a/closed/x.jpg").status == Status.DISALLOWED_BY_TDMREP
    assert tdmrep.parse_rules(b"[1, 2]") == () and tdmrep.parse_rules(b"\xff") == ()


def test_crawl_delay_pacing_does_not_block_other_origins() -> None:
    from crawl.origins import HostPacer

    async def run() -> float:
        pacer, start = HostPacer(), time.monotonic()
        await asyncio.gather(pacer.wait("a", 0.2), pacer.wait("a", 0.2), pacer.wait("b", 0.2))
        return time.monotonic() - start

    assert 0.15 < asyncio.run(run()) < 0.6


def test_origin_cache_ttl_transient_values_and_one_computation_at_a_time() -> None:
    from crawl.origins import OriginCache

    now = [0.0]
    calls: list[str] = []

    async def compute(value: str) -> str:
        calls.append(value)
        await asyncio.sleep(0.01)
        return value

    cache: OriginCache[str] = OriginCache(100.0, clock=lambda: now[0], is_transient=lambda v: v == "down",
                                          transient_ttl_s=5.0)

    async def burst(origin: str, value: str) -> list[str]:
        return await asyncio.gather(*(cache.get(origin, lambda: compute(value)) for _ in range(5)))

    assert asyncio.run(burst("a", "rules")) == ["rules"] * 5 and calls == ["rules"]  # one fetch for five rows
    assert asyncio.run(burst("b", "down")) == ["down"] * 5
    now[0] = 50.0  # within the TTL, past the transient TTL
    asyncio.run(burst("a", "new rules"))
    asyncio.run(burst("b", "up"))
    assert calls == ["rules", "down", "up"]
    now[0] = 101.0
    assert asyncio.run(burst("a", "new rules"))[0] == "new rules"
    small: OriginCache[str] = OriginCache(100.0, max_entries=2)
    for origin in ("x", "y", "z"):
        asyncio.run(small.get(origin, lambda: compute(origin)))
    assert list(small._values) == ["y", "z"]  # bounded: the oldest origin went first
