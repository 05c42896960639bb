"""W3C TDM Reservation Protocol: an origin's ``/.well-known/tdmrep.json`` -> a verdict per URL.

The file is a JSON array of rules ``{"location": "/path/*", "tdm-reservation": 1, "tdm-policy": URL}``;
``location`` is a path pattern in robots.txt syntax (``*`` any run of characters, a final ``$`` anchors
the end) and the first rule whose location matches the URL's path applies. A missing, unreadable or
malformed file reserves nothing: TDMRep is an opt-out, so its absence is no reservation. The
``tdm-reservation`` response header is checked on the image response itself (``crawl.fetch``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from crawl.fetch import Fetched
from manifests.schema import Status


@dataclass(frozen=True)
class TdmRule:
    location: str
    reserved: bool
    policy: str | None
    pattern: re.Pattern[str]


def location_pattern(location: str) -> re.Pattern[str]:
    """A robots.txt-style path pattern as a regex anchored at the start of the path."""
    anchored = location.endswith("$")
    body = ".*".join(re.escape(part) for part in location.rstrip("$").split("*"))
    return re.compile(body + ("$" if anchored else ""))


def parse_rules(data: bytes | None) -> tuple[TdmRule, ...]:
    """The valid rules of a tdmrep.json body, in order; anything malformed is skipped, never raised."""
    try:
        doc = json.loads(data or b"")
    except (ValueError, UnicodeDecodeError):
        return ()
    if not isinstance(doc, list):
        return ()
    rules = []
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("location"), str):
            continue
        reservation = item.get("tdm-reservation")
        if reservation not in (0, 1, "0", "1"):
            continue
        policy = item.get("tdm-policy")
        rules.append(TdmRule(item["location"], str(reservation) == "1",
                             policy if isinstance(policy, str) and policy else None,
                             location_pattern(item["location"])))
    return tuple(rules)


def rules_from(fetched: Fetched) -> tuple[TdmRule, ...]:
    """Only a 2xx body holds rules; 404 (the usual answer) and every failure reserve nothing."""
    return parse_rules(fetched.data) if fetched.status == Status.SUCCESS else ()


def verdict(rules: tuple[TdmRule, ...], url: str) -> Fetched | None:
    """A ``disallowed_by_tdmrep`` row when the first rule matching the URL's path reserves TDM rights."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    for rule in rules:
        if rule.pattern.match(path):
            if not rule.reserved:
                return None
            return Fetched(Status.DISALLOWED_BY_TDMREP, f"tdmrep.json reserves TDM rights for {rule.location!r}",
                           tdm_policy=rule.policy)
    return None
