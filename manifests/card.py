"""``thresher card RUN``: a dataset card from the manifest and run.json alone, laid out after the EU template.

The AI Office's template for the public summary of training content (AI Act Art. 53(1)(d)) has three
parts: 1 general information (provider, model, modalities and size), 2 the list of data sources
(2.1 public datasets, 2.2 private third-party datasets, 2.3 data crawled and scraped online, 2.4 user
data, 2.5 synthetic data, 2.6 other) and 3 data processing (3.1 respect of reservations of rights from
the TDM exception, 3.2 removal of illegal content, 3.3 other information). The card fills what a run
knows under those headings and marks the rest for the model provider. Every count is an aggregate over
the manifest (a lazy scan: memory does not grow with the run); nothing is estimated.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import polars as pl

from pydantic import Field

from manifests import schema as col
from manifests.config import StrictModel
from manifests.schema import Status

TEMPLATE = ("EU AI Office, Template for the Public Summary of Training Content for general-purpose AI models "
            "(AI Act Art. 53(1)(d))")
TOP_SHARE = 0.10  # the template lists the top 10% of domain names by size of content scraped
MARKDOWN_DOMAINS = 100  # rows of the domain table in the Markdown; the JSON has the whole list
TO_FILL = "to be completed by the model provider"
_HOST = r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/?#]*@)?(\[[^\]]+\]|[^/:?#]+)"


class CardConfig(StrictModel):
    license_columns: tuple[str, ...] = Field(
        ("license",), description="input extra_cols that hold a licence, matched in any case (license, LICENSE, "
                                  "License); counted beside license_url, the licence an image's own metadata declares")


def _counts(frame: pl.LazyFrame, column: str, where: pl.Expr | None = None) -> dict[str, int]:
    """Non-null values of ``column`` -> rows, largest first (ties by value, so the card is deterministic)."""
    lazy = frame.filter(where) if where is not None else frame
    out = (lazy.select(pl.col(column).drop_nulls().cast(pl.String)).group_by(column).len()
           .sort(["len", column], descending=[True, False]).collect())
    return dict(out.iter_rows())


def _has(names: set[str], *columns: str) -> bool:
    return all(c in names for c in columns)


def general(frame: pl.LazyFrame, info: dict) -> dict:
    kept = pl.col(col.KEEP)
    totals = frame.select(pl.len().alias("rows"), kept.sum().alias("kept"),
                          pl.col(col.BYTES).filter(kept).sum().alias("kept_bytes")).collect().row(0, named=True)
    status = {s: 0 for s in Status.ALL} | _counts(frame, col.STATUS)
    return {"provider": TO_FILL, "model": TO_FILL, "modalities": ["image", "text (captions)"],
            "rows": totals["rows"], "kept": int(totals["kept"] or 0), "kept_original_bytes": int(totals["kept_bytes"] or 0),
            "status": status, "kept_mime_types": _counts(frame, col.MIME_TYPE, kept),
            "thresher": {"version": (info.get("versions") or {}).get("thresher"), "git_revision": info.get("git_revision")}}


def domains(frame: pl.LazyFrame) -> dict:
    """Rows, kept rows and kept bytes per URL host, and the template's top 10% by content kept."""
    host = pl.col(col.URL).str.extract(_HOST, 1).str.to_lowercase().fill_null("(no host: local files)")
    per = (frame.group_by(host.alias("domain"))
           .agg(pl.len().alias("rows"), pl.col(col.KEEP).sum().alias("kept"),
                pl.col(col.BYTES).filter(pl.col(col.KEEP)).sum().alias("kept_bytes"))
           .sort(["kept_bytes", "rows", "domain"], descending=[True, True, False]).collect())
    top = per.head(max(1, math.ceil(TOP_SHARE * per.height))) if per.height else per
    return {"total": per.height, "top_rule": f"top {TOP_SHARE:.0%} of domains by original bytes kept",
            "top": [{k: (int(v) if isinstance(v, (int, float)) else v) for k, v in r.items()} for r in top.to_dicts()]}


def collection_period(frame: pl.LazyFrame, names: set[str]) -> dict:
    if col.FETCHED_AT not in names:
        return {"first": None, "last": None}
    first, last = frame.select(pl.col(col.FETCHED_AT).min().alias("first"),
                               pl.col(col.FETCHED_AT).max().alias("last")).collect().row(0)
    iso = lambda t: t.isoformat() if isinstance(t, datetime) else None  # noqa: E731
    return {"first": iso(first), "last": iso(last)}


def crawl_behaviour(config: dict) -> dict:
    crawl = config.get("crawl") or {}
    robots, tdm = crawl.get("robots_txt") or {}, crawl.get("tdmrep") or {}
    token = crawl.get("user_agent_token", "thresher")
    return {
        "crawler": {"user_agent_token": token, "user_agent": f"Mozilla/5.0 (compatible; {token}/0.1)"},
        "robots_txt": {"honoured": bool(robots.get("enabled", False)),
                       "agents_honoured": [token, *robots.get("honoured_agents", [])],
                       "unreachable_robots_txt": robots.get("on_unreachable"),
                       "max_crawl_delay_s": robots.get("max_crawl_delay_s")},
        "tdmrep": {"honoured": bool(tdm.get("enabled", False))},
        "x_robots_tag_directives": crawl.get("disallowed_header_directives", []),
        "private_addresses_fetched": bool(crawl.get("allow_private_addresses", False)),
        "blocklists": [b.get("name") or Path(b["path"]).stem for b in crawl.get("blocklists", [])],
    }


def opt_outs(frame: pl.LazyFrame, names: set[str]) -> dict:
    opted = pl.col(col.STATUS).is_in(list(Status.OPT_OUTS))
    host = pl.col(col.URL).str.extract(_HOST, 1).str.to_lowercase()
    n_domains = frame.filter(opted).select(host.drop_nulls().n_unique()).collect().item()
    return {"excluded": {s: 0 for s in Status.OPT_OUTS} | _counts(frame, col.STATUS, opted),
            "domains_with_an_opt_out": int(n_domains or 0),
            "tdm_policies": _counts(frame, col.TDM_POLICY) if col.TDM_POLICY in names else {}}


def licence_columns(names: set[str], wanted: tuple[str, ...]) -> list[str]:
    """The input's extra columns that carry a licence: named as one of ``wanted``, in any case."""
    folded = [w.casefold() for w in wanted]
    found = [n for n in names if n.casefold() in folded and n not in col.KNOWN_COLUMNS]
    return sorted(found, key=lambda n: (folded.index(n.casefold()), n))


def provenance(frame: pl.LazyFrame, names: set[str], config: CardConfig = CardConfig()) -> dict:
    """Licence and provenance columns, over kept rows (what goes into training) and over all successes.
    A row is licensed when its image declares a licence (``license_url``) or a licence column the input
    carried (``card.license_columns``) holds a value."""
    kept, ok = pl.col(col.KEEP), pl.col(col.STATUS) == Status.SUCCESS
    carried = licence_columns(names, config.license_columns)
    if not (_has(names, col.LICENSE, col.C2PA_PRESENT, col.AI_GENERATED_DECLARED) or carried):
        return {"available": False}
    given = [_text(c).is_not_null() for c in [col.LICENSE, *carried]]
    sums = frame.select(
        *(pl.col(c).is_not_null().filter(kept).sum().alias(f"kept_with_{c}")
          for c in (col.LICENSE, col.COPYRIGHT, col.ATTRIBUTION)),
        pl.any_horizontal(given).filter(kept).sum().alias("kept_with_license"),
        pl.col(col.C2PA_PRESENT).fill_null(False).filter(kept).sum().alias("kept_with_c2pa"),
        pl.col(col.AI_GENERATED_DECLARED).fill_null(False).filter(kept).sum().alias("kept_ai_generated_declared"),
        pl.col(col.AI_GENERATED_DECLARED).fill_null(False).filter(ok).sum().alias("downloaded_ai_generated_declared"),
    ).collect().row(0, named=True)
    return {"available": True, **{k: int(v or 0) for k, v in sums.items()},
            "license_columns": [col.LICENSE, *carried],
            "kept_licenses": _counts(frame, col.LICENSE, kept),
            "kept_licenses_carried": {c: _counts(frame.with_columns(_text(c)), c, kept) for c in carried},
            "kept_c2pa_claim_generators": _counts(frame, col.C2PA_CLAIM_GENERATOR, kept),
            "kept_digital_source_types": _counts(frame, col.DIGITAL_SOURCE_TYPE, kept)}


def _text(column: str) -> pl.Expr:
    """A licence cell as text, null when empty (a CSV's empty cell is "")."""
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text).alias(column)


def synthetic(licences: dict) -> dict:
    """Images whose own metadata declares generative-AI origin (IPTC DigitalSourceType, C2PA actions)."""
    keys = ("kept_ai_generated_declared", "downloaded_ai_generated_declared", "kept_digital_source_types")
    return {"provider_generated": TO_FILL, **{k: licences.get(k) for k in keys}}


def filters_and_models(frame: pl.LazyFrame, info: dict) -> dict:
    config = info.get("config") or {}
    filters = config.get("filters") or {}
    sections = {name: sec for name, sec in filters.items() if isinstance(sec, dict) and sec.get("enabled", True)}
    phases = info.get("phases") or {}
    stages = {**(phases.get("score") or {}).get("stages", {}), **(phases.get("caption") or {}).get("stages", {})}
    reasons = (frame.select(pl.col(col.REJECT_REASONS).explode().drop_nulls().alias("reason"))
               .group_by("reason").len().sort(["len", "reason"], descending=[True, False]).collect())
    return {"filters": sections, "dedup": config.get("dedup") or {}, "reject_reasons": dict(reasons.iter_rows()),
            "dedup_result": phases.get("dedup") or {}, "models": stages, "versions": info.get("versions") or {}}


def with_contract_columns(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Contract columns a manifest lacks (an older run, a stage that did not run) as nulls: absent is unknown."""
    names = set(frame.collect_schema().names())
    contract = pl.from_arrow(col.MANIFEST_SCHEMA.empty_table()).schema
    return frame.with_columns(pl.lit(None, dtype=dtype).alias(name) for name, dtype in contract.items()
                              if name not in names)


def build_card(frame: pl.LazyFrame, info: dict, run: str | None = None, settings: CardConfig = CardConfig()) -> dict:
    """The card as data: every figure comes from ``frame`` (the manifest) or ``info`` (run.json)."""
    names = set(frame.collect_schema().names())  # before the nulls: a missing column is reported as unavailable
    frame = with_contract_columns(frame)
    config = info.get("config") or {}
    status = _counts(frame, col.STATUS)
    blocks = _counts(frame, col.BLOCKLIST) if col.BLOCKLIST in names else {}
    nsfw = (config.get("filters") or {}).get("nsfw") or {}
    processing = filters_and_models(frame, info)
    licences = provenance(frame, names, settings)
    return {
        "template": TEMPLATE, "run": run or config.get("output_dir"),
        "1_general_information": general(frame, info),
        "2_list_of_data_sources": {
            "2.1_publicly_available_datasets": {"input": config.get("input")},
            "2.2_private_third_party_datasets": TO_FILL, "2.4_user_data": TO_FILL, "2.6_other_sources": TO_FILL,
            "2.3_crawled_and_scraped_data": {**crawl_behaviour(config), "collection_period": collection_period(frame, names),
                                             "domains": domains(frame)},
            "2.5_synthetic_data": synthetic(licences),
        },
        "3_data_processing": {
            "3.1_reservation_of_rights": opt_outs(frame, names),
            "3.2_illegal_content_removal": {
                "known_hash_lists": {"lists": crawl_behaviour(config)["blocklists"], "blocked": blocks,
                                     "blocked_total": status.get(Status.BLOCKED_HASH_MATCH, 0)},
                "nsfw_filter": {"enabled": bool(nsfw.get("enabled")), "max_prob": nsfw.get("max_prob"),
                                "rejected": processing["reject_reasons"].get("nsfw", 0)}},
            "3.3_other": {**processing, "licences_and_provenance": licences},
        },
    }


# --- Markdown -------------------------------------------------------------------------------------

MODEL_KEYS = ("model", "pretrained", "revision", "weights", "checkpoint", "path", "backend")


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return lines + [""]


def _mapping(values: dict, header: tuple[str, str] = ("value", "rows")) -> list[str]:
    return _table(header, list(values.items()))


def _settings(section: dict, keys: tuple[str, ...] | None = None) -> str:
    items = {k: v for k, v in section.items() if not isinstance(v, (dict, list))
             and (keys is None or any(key in k for key in keys))}
    return ", ".join(f"{k}={v}" for k, v in items.items())


def _md_general(g: dict) -> list[str]:
    return ["## 1. General information", "",
            f"- Provider: *{g['provider']}*; model: *{g['model']}*",
            f"- Modalities: {', '.join(g['modalities'])}",
            f"- Input rows: {g['rows']}; kept for training: {g['kept']} ({g['kept_original_bytes']} original bytes)",
            f"- Thresher {g['thresher']['version']} at git revision {g['thresher']['git_revision']}", "",
            "Rows per ingest status (every opt-out and block included):", "", *_mapping(g["status"]),
            "Kept rows per image type:", "", *_mapping(g["kept_mime_types"])]


def _md_crawled(c: dict) -> list[str]:
    robots, period, doms = c["robots_txt"], c["collection_period"], c["domains"]
    return ["### 2.3 Data crawled and scraped from online sources", "",
            f"- Crawler: user-agent token `{c['crawler']['user_agent_token']}` (`{c['crawler']['user_agent']}`)",
            f"- robots.txt honoured: {robots['honoured']}, for the agents {', '.join(robots['agents_honoured'])}; "
            f"a robots.txt answering 5xx: {robots['unreachable_robots_txt']} all (RFC 9309)",
            f"- TDMRep honoured: {c['tdmrep']['honoured']}; X-Robots-Tag directives honoured: "
            f"{', '.join(c['x_robots_tag_directives']) or 'none'}",
            f"- Collection period: {period['first']} to {period['last']}",
            f"- Domains: {doms['total']}; the {doms['top_rule']}:", "",
            *_table(("domain", "rows", "kept", "kept bytes"),
                    [(d["domain"], d["rows"], d["kept"], d["kept_bytes"]) for d in doms["top"][:MARKDOWN_DOMAINS]])]


def _md_sources(src: dict) -> list[str]:
    synth = src["2.5_synthetic_data"]
    return ["## 2. List of data sources", "", "### 2.1 Publicly available datasets", "",
            f"Input: {_settings(src['2.1_publicly_available_datasets']['input'] or {})}", "",
            "### 2.2 Private datasets from third parties", "", f"*{TO_FILL}*", "",
            *_md_crawled(src["2.3_crawled_and_scraped_data"]),
            "### 2.4 User data", "", f"*{TO_FILL}*", "",
            "### 2.5 Synthetic data", "", f"Generated by the provider: *{TO_FILL}*. Crawled images whose own metadata "
            f"declares generative-AI origin: {synth['downloaded_ai_generated_declared']} downloaded, "
            f"{synth['kept_ai_generated_declared']} kept.", "",
            "### 2.6 Other sources", "", f"*{TO_FILL}*", ""]


def _md_processing(proc: dict) -> list[str]:
    rights, illegal, other = (proc["3.1_reservation_of_rights"], proc["3.2_illegal_content_removal"],
                              proc["3.3_other"])
    lists, nsfw, lic = illegal["known_hash_lists"], illegal["nsfw_filter"], other["licences_and_provenance"]
    return ["## 3. Data processing", "", "### 3.1 Respect of reservations of rights (TDM opt-outs)", "",
            f"Rows not collected because of an opt-out ({rights['domains_with_an_opt_out']} domains):", "",
            *_mapping(rights["excluded"]), "TDM policies recorded:", "", *_mapping(rights["tdm_policies"]),
            "### 3.2 Removal of illegal content", "",
            f"Known-hash lists: {', '.join(lists['lists']) or 'none'}; {lists['blocked_total']} downloads blocked "
            "before anything was written:", "", *_mapping(lists["blocked"], ("list", "rows")),
            f"NSFW filter: {'on, max_prob=' + str(nsfw['max_prob']) if nsfw['enabled'] else 'off'}; "
            f"{nsfw['rejected']} rows rejected.", "",
            "### 3.3 Other information", "", "Reject reasons (a row counts under each of its reasons):", "",
            *_mapping(other["reject_reasons"]), "Filters and thresholds:", "",
            *_table(("section", "settings"), [(k, _settings(v)) for k, v in other["filters"].items()]),
            "Deduplication settings:", "",
            *_table(("detector", "settings"), [(k, _settings(v)) for k, v in other["dedup"].items()
                                               if isinstance(v, dict) and v.get("enabled", True)]),
            "Deduplication result:", "", *_table(("figure", "value"), list(other["dedup_result"].items())),
            "Licences and provenance of kept rows:", "",
            *_table(("figure", "rows"), [(k, v) for k, v in lic.items() if isinstance(v, int) and not isinstance(v, bool)]),
            "Licence URLs:", "", *_mapping(lic.get("kept_licenses", {})),
            *[line for column, values in lic.get("kept_licenses_carried", {}).items()
              for line in [f"Licences in the input's `{column}` column:", "", *_mapping(values)]],
            "C2PA claim generators:", "", *_mapping(lic.get("kept_c2pa_claim_generators", {})),
            "Models:", "", *_table(("stage", "class", "model"), [
                (k, v.get("class"), _settings(v.get("config") or {}, MODEL_KEYS)) for k, v in other["models"].items()]),
            "Versions:", "", *_mapping(other["versions"], ("package", "version"))]


def render_markdown(card: dict) -> str:
    """DATASET_CARD.md: the JSON's figures under the template's headings."""
    head = [f"# Dataset card: {card['run']}", "", f"Organised after the {card['template']}.",
            "Every figure comes from the run's manifest and run.json; *to be completed* marks what only the "
            "model provider knows.", ""]
    return "\n".join(head + _md_general(card["1_general_information"]) + _md_sources(card["2_list_of_data_sources"])
                     + _md_processing(card["3_data_processing"]))
