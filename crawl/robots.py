"""robots.txt (RFC 9309): one origin's file -> a verdict per URL for our token and the AI tokens we honour.

Fetching is ``crawl.origins``' job (once per origin per worker, through the SSRF guard); this module
turns what came back into rules. RFC 9309 section 2.3.1: a 2xx body is parsed; a 4xx ("unavailable")
allows everything; a 5xx or a network failure ("unreachable") disallows everything, which
``crawl.robots_txt.on_unreachable`` can relax. Parsing is protego's (Scrapy's RFC 9309 parser).
"""

from __future__ import annotations

from dataclasses import dataclass

from protego import Protego

from crawl.config import CrawlConfig
from crawl.fetch import Fetched
from manifests.schema import Status


@dataclass(frozen=True)
class RobotsRules:
    """One origin's robots.txt: parsed rules, or a blanket allow/deny with the reason for it."""

    parser: Protego | None = None
    deny_all: str | None = None  # why everything is disallowed (unreachable robots.txt), or None
    refused: Fetched | None = None  # the guard refused the origin, or it did not answer: every URL gets this row

    @property
    def transient(self) -> bool:
        """An unreachable robots.txt is asked again soon rather than trusted for the whole TTL."""
        return self.deny_all is not None or (self.refused is not None and self.refused.status != Status.BLOCKED_ADDRESS)

    def crawl_delay(self, agent: str) -> float | None:
        return self.parser.crawl_delay(agent) if self.parser is not None else None


def rules_from(fetched: Fetched, config: CrawlConfig) -> RobotsRules:
    """What one robots.txt fetch means for its origin."""
    if fetched.status in (Status.BLOCKED_ADDRESS, Status.INVALID_URL):
        return RobotsRules(refused=Fetched(fetched.status, f"robots.txt: {fetched.error}", attempts=fetched.attempts))
    if fetched.status == Status.SUCCESS:
        text = (fetched.data or b"").decode("utf-8", errors="replace")
        return RobotsRules(parser=Protego.parse(text))
    code = fetched.http_status
    if code is not None and 400 <= code < 500 and code != 429:  # 429 is a load signal, treated as unreachable
        return RobotsRules()
    if config.robots_txt.on_unreachable == "allow":
        return RobotsRules()
    if code is None and fetched.status == Status.FAILED_TO_DOWNLOAD:
        # No answer at all: the host is down for the image too. Not fetched (RFC 9309), recorded as the
        # network failure it is, so ``--retry-failed`` tries the origin again.
        return RobotsRules(refused=Fetched(Status.FAILED_TO_DOWNLOAD, f"robots.txt unreachable, URL not fetched: "
                                                                      f"{fetched.error}", attempts=fetched.attempts))
    # A 5xx, a 429, or a robots.txt larger than robots_txt.max_bytes (RFC 9309 needs 500 KiB parsed).
    return RobotsRules(deny_all=f"robots.txt unreachable ({fetched.error}): RFC 9309 disallows the whole origin")


def agents(config: CrawlConfig) -> tuple[str, ...]:
    """Our token first, then every AI-crawler token we honour."""
    return (config.user_agent_token, *(a for a in config.robots_txt.honoured_agents if a != config.user_agent_token))


def verdict(rules: RobotsRules, url: str, config: CrawlConfig) -> Fetched | None:
    """A ``disallowed_by_robots_txt`` row naming the agent and rule, the guard's refusal, or None to go ahead."""
    if rules.refused is not None:
        return rules.refused
    if rules.deny_all is not None:
        return Fetched(Status.DISALLOWED_BY_ROBOTS_TXT, rules.deny_all)
    if rules.parser is None:
        return None
    for agent in agents(config):
        if not rules.parser.can_fetch(url, agent):
            rule = matching_rule(rules.parser, url, agent)
            return Fetched(Status.DISALLOWED_BY_ROBOTS_TXT, f"robots.txt disallows {agent}: {rule}")
    delay, limit = rules.crawl_delay(config.user_agent_token), config.robots_txt.max_crawl_delay_s
    if delay is not None and delay > limit:
        return Fetched(Status.DISALLOWED_BY_ROBOTS_TXT,
                       f"robots.txt Crawl-delay: {delay:g} exceeds crawl.robots_txt.max_crawl_delay_s={limit:g}")
    return None


def matching_rule(parser: Protego, url: str, agent: str) -> str:
    """The group and the rule that decided, for the row's ``error``.

    protego decides (``can_fetch`` above); it has no public way to say which rule matched, so this
    reads its rule set, and falls back to the agent alone if protego's internals ever change.
    """
    try:
        group = parser._get_matching_rule_set(agent)  # noqa: SLF001 -- see the docstring
        from protego._utils import _quote_path  # noqa: PLC0415 -- private, same reason
        path = _quote_path(url)
        for rule in group._rules:  # noqa: SLF001 -- sorted by priority, as can_fetch walks them
            if rule.value.match(path):
                return f"User-agent: {group.user_agent} / {rule.field.capitalize()}: {rule.value._pattern}"
    except (AttributeError, ImportError, TypeError):
        pass
    return f"disallowed for {agent}"
