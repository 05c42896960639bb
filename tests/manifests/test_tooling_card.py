"""``thresher card RUN``: the dataset card's counts equal the manifest's, on the real curated run; a blocked
image's bytes are nowhere in that run; a manifest without the compliance columns still gets a card."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from tooling_support import BLOCKED_KIND, GENERATED_KIND, OPTED_OUT_KIND

from crawl.config import CrawlConfig
from crawl.image import stage_image
from manifests import schema as col
from manifests.reexport import read_manifest
from manifests.schema import Status
from pipelines.cli.main import main
from pipelines.tools import commands as tools


@pytest.fixture(scope="module")
def carded(real_run: Path) -> dict:
    md, js = tools.run_card(real_run, None)
    assert (md, js) == (real_run / "reports" / "DATASET_CARD.md", real_run / "reports" / "dataset_card.json")
    manifest = read_manifest(real_run)
    kinds = pl.read_parquet(real_run.parent / "urls.parquet")["kind"]
    return {"card": json.loads(js.read_text()), "md": md.read_text(), "manifest": manifest,
            "by_kind": dict(zip(kinds, manifest.sort(col.SOURCE_ROW).iter_rows(named=True)))}


def test_counts_equal_the_manifest(carded: dict) -> None:
    card, manifest = carded["card"], carded["manifest"]
    general = card["1_general_information"]
    assert general["rows"] == manifest.height and general["kept"] == manifest[col.KEEP].sum()
    assert {k: v for k, v in general["status"].items() if v} == dict(Counter(manifest[col.STATUS]))
    assert set(general["status"]) == set(Status.ALL)
    kept = manifest.filter(pl.col(col.KEEP))
    assert general["kept_original_bytes"] == kept[col.BYTES].sum()
    domains = card["2_list_of_data_sources"]["2.3_crawled_and_scraped_data"]["domains"]
    assert domains["total"] == 1 and domains["top"][0]["rows"] == manifest.height  # one loopback origin
    reasons = Counter(r for rs in manifest[col.REJECT_REASONS] for r in rs)
    assert card["3_data_processing"]["3.3_other"]["reject_reasons"] == dict(reasons)


def test_opt_outs_blocks_and_provenance_are_accounted(carded: dict) -> None:
    card, by_kind = carded["card"], carded["by_kind"]
    assert by_kind[OPTED_OUT_KIND][col.STATUS] == Status.DISALLOWED_BY_ROBOTS_TXT
    assert "GPTBot" in by_kind[OPTED_OUT_KIND][col.ERROR]
    assert by_kind[BLOCKED_KIND][col.STATUS] == Status.BLOCKED_HASH_MATCH
    assert by_kind[GENERATED_KIND][col.AI_GENERATED_DECLARED] is True
    rights = card["3_data_processing"]["3.1_reservation_of_rights"]
    assert rights["excluded"][Status.DISALLOWED_BY_ROBOTS_TXT] == 1 and rights["domains_with_an_opt_out"] == 1
    lists = card["3_data_processing"]["3.2_illegal_content_removal"]["known_hash_lists"]
    assert lists == {"lists": ["known"], "blocked": {"known": 1}, "blocked_total": 1}
    run_json = json.loads((Path(card["run"]) / "run.json").read_text())
    assert run_json["counts"]["blocklists"] == {"known": 1}
    synthetic = card["2_list_of_data_sources"]["2.5_synthetic_data"]
    assert synthetic["downloaded_ai_generated_declared"] == 1
    lic = card["3_data_processing"]["3.3_other"]["licences_and_provenance"]
    generated_kept = int(by_kind[GENERATED_KIND][col.KEEP])
    assert lic["kept_licenses"] == ({"https://creativecommons.org/publicdomain/zero/1.0/": 1} if generated_kept else {})
    period = card["2_list_of_data_sources"]["2.3_crawled_and_scraped_data"]["collection_period"]
    assert period["first"] <= period["last"] and period["first"].startswith("20")


def test_markdown_follows_the_template(carded: dict) -> None:
    md = carded["md"]
    for heading in ("## 1. General information", "## 2. List of data sources", "### 2.3 Data crawled and scraped",
                    "### 2.5 Synthetic data", "## 3. Data processing", "### 3.1 Respect of reservations of rights",
                    "### 3.2 Removal of illegal content", "### 3.3 Other information"):
        assert heading in md
    assert f"| {Status.DISALLOWED_BY_ROBOTS_TXT} | 1 |" in md and "| known | 1 |" in md


def test_blocked_bytes_are_nowhere_in_the_run(real_run: Path, carded: dict) -> None:
    """Neither the listed file nor what staging would have made of it is in any file the run wrote."""
    data = (real_run.parent / "blocked.jpg").read_bytes()  # kept by the fixture (tooling_support.compliance_rows)
    staged = stage_image(data, CrawlConfig(image_size=256, resize_mode="border")).data
    for path in (p for p in real_run.rglob("*") if p.is_file()):
        content = path.read_bytes()
        assert data[:4096] not in content and staged[:4096] not in content, path


def test_a_manifest_without_compliance_columns_gets_a_card(synthetic_run: Path, capsys) -> None:
    assert main(["card", str(synthetic_run), "--out", str(synthetic_run.parent / "card")]) == 0
    assert capsys.readouterr().out.split() == [str(synthetic_run.parent / "card" / n)
                                               for n in ("DATASET_CARD.md", "dataset_card.json")]
    card = json.loads((synthetic_run.parent / "card" / "dataset_card.json").read_text())
    manifest = read_manifest(synthetic_run)
    assert card["1_general_information"]["rows"] == manifest.height
    assert card["3_data_processing"]["3.3_other"]["licences_and_provenance"] == {"available": False}


@pytest.mark.parametrize("column, overrides", [("LICENSE", []), ("license", []),
                                               ("rights", ["--set", "card.license_columns=[rights]"])])
def test_licence_columns_the_input_carried_are_counted(synthetic_run: Path, tmp_path, capsys, column, overrides):
    """img2dataset lists carry LICENSE or license as an extra column; others name theirs in card.license_columns."""
    run = tmp_path / "run"
    shutil.copytree(synthetic_run, run)
    values = ["cc-by", "cc0", "", None]
    for part in sorted((run / "manifest").glob("*.parquet")):
        rows = pl.read_parquet(part)
        rows.with_columns(pl.Series(column, [values[i % 4] for i in range(rows.height)], pl.String)).write_parquet(part)
    assert main(["card", str(run), "--out", str(tmp_path / "card"), *overrides]) == 0
    capsys.readouterr()
    lic = json.loads((tmp_path / "card" / "dataset_card.json").read_text())["3_data_processing"]["3.3_other"][
        "licences_and_provenance"]
    kept = read_manifest(run).filter(pl.col(col.KEEP))
    given = kept.filter(pl.col(column).is_in(["cc-by", "cc0"]))
    assert lic["available"] and lic["license_columns"] == [col.LICENSE, column]
    assert lic["kept_with_license"] == given.height > 0
    assert lic["kept_licenses_carried"] == {column: dict(Counter(given[column]).most_common())}
    assert f"Licences in the input's `{column}` column:" in (tmp_path / "card" / "DATASET_CARD.md").read_text()
