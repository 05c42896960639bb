"""thresher query: DuckDB over the manifest, checked against Polars and plain Python."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from manifests import query
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.reexport import read_manifest
from pipelines.cli.main import main


def test_group_by_matches_polars(synthetic_run):
    manifest = RunLayout.at(synthetic_run).manifest_files()
    assert len(manifest) == 3
    got = pl.from_arrow(query.query(manifest, "SELECT status, keep, count(*) AS n FROM manifest GROUP BY ALL"))
    frame = read_manifest(synthetic_run)
    expected = Counter(zip(frame[col.STATUS].to_list(), frame[col.KEEP].to_list()))
    assert {(s, k): n for s, k, n in got.iter_rows()} == dict(expected)
    assert sum(expected.values()) == 20_000


def test_unnest_reasons_matches_python(synthetic_run):
    manifest = RunLayout.at(synthetic_run).manifest_files()
    got = query.query(manifest, "SELECT unnest(reject_reasons) AS r, count(*) AS n FROM manifest GROUP BY r")
    expected = Counter(r for reasons in read_manifest(synthetic_run)[col.REJECT_REASONS].to_list() for r in reasons)
    assert dict(zip(got["r"].to_pylist(), got["n"].to_pylist())) == dict(expected)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_writes_result(synthetic_run, tmp_path, capsys, suffix):
    out = tmp_path / f"result{suffix}"
    sql = "SELECT sample_id, clip_score, reject_reasons FROM manifest WHERE NOT keep ORDER BY sample_id LIMIT 100"
    assert main(["query", str(synthetic_run), sql, "--out", str(out)]) == 0
    assert "100 rows written" in capsys.readouterr().out
    back = pl.read_csv(out) if suffix == ".csv" else pl.read_parquet(out)
    expected = read_manifest(synthetic_run).filter(~pl.col(col.KEEP)).sort(col.SAMPLE_ID)
    assert back[col.SAMPLE_ID].cast(pl.String).str.zfill(9).to_list() == expected[col.SAMPLE_ID][:100].to_list()
    if suffix == ".csv":  # nested lists become JSON text
        assert back[col.REJECT_REASONS][0].startswith("[")


def test_cli_prints_a_table(synthetic_run, capsys):
    assert main(["query", str(synthetic_run), "SELECT count(*) AS n FROM manifest"]) == 0
    assert "20000" in capsys.readouterr().out


def test_bad_sql_and_bad_suffix_are_usage_errors(synthetic_run, tmp_path, capsys):
    assert main(["query", str(synthetic_run), "SELECT * FROM nowhere"]) == 2
    assert "query failed" in capsys.readouterr().err
    assert main(["query", str(synthetic_run), "SELECT 1", "--out", str(tmp_path / "x.xlsx")]) == 2
    assert "unknown format" in capsys.readouterr().err
    assert main(["query", str(tmp_path), "SELECT 1"]) == 2  # not a run directory
