"""The manifest tools behind ``thresher query|tune|plots|audit|card|reexport RUN``: config + decision glue.

Only the manifest (and, for export and audit, the staged images) is read; no model is loaded and
no Ray is started. ``--set`` overrides apply to the run's resolved config (RUN/config.yaml).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from dedup.plan import local_tasks
from filters.config import ThresholdRule, threshold_rules
from filters.decide import decide, reason_exprs
from manifests import audit, card, plots, query, reexport, tune
from manifests import schema as col
from manifests.io import atomic_path, read_json, write_json
from manifests.layout import RunLayout
from manifests.plots import Threshold
from manifests.schema import Status
from pipelines.config import RunConfig, dump_config, load_config
from pipelines.run import repick
from pipelines.tools import decision


def _threshold(rule: ThresholdRule) -> Threshold:
    if rule.minimum is not None:
        return Threshold(rule.column, rule.minimum, f"min {rule.reason}")
    return Threshold(rule.column, rule.maximum, f"max {rule.reason}")


def thresholds(config: RunConfig) -> list[Threshold]:
    """Every score threshold of the config's filters (``filters.config.threshold_rules``)."""
    return [_threshold(r) for r in threshold_rules(config.filters)]


@contextmanager
def manifest(run: Path, overrides: list[str]) -> Iterator[tuple[pl.LazyFrame, RunConfig]]:
    """The run's manifest, lazily over its parts; with overrides, re-decided under them (survivors
    re-picked from the stored pairs, ``pipelines.run.repick``), still lazily, valid inside the block."""
    config = load_config(run, overrides)
    if not overrides:
        yield reexport.scan_manifest(RunLayout.at(run)), config
        return
    with repick.current_manifest(run, config, local_tasks) as frame:
        yield decide(frame, config.filters), config


def run_query(run: Path, sql: str, out: Path | None, max_rows: int) -> str:
    table = query.query(reexport.manifest_files(RunLayout.at(run)), sql)
    if out is not None:
        query.write_result(table, out)
        return f"{table.num_rows} rows written to {out}"
    return query.format_table(table, max_rows)


def run_tune(run: Path, overrides: list[str]) -> tuple[tune.TuneReport, str]:
    config = load_config(run, overrides)
    source = reexport.scan_manifest(RunLayout.at(run))
    pairs = repick.pairs_layout(run)
    with repick.current_manifest(run, config, local_tasks) as frame:  # survivors under the new rules
        report = tune.retune(frame, reason_exprs(config.filters, set(frame.collect_schema().names())))
    heading = f"Tuning {run} with " + (" ".join(f"--set {o}" for o in overrides) or "its own thresholds")
    notes = decision.override_notes(overrides, config, load_config(run), set(source.collect_schema().names()), pairs)
    text = "\n".join([heading, *[f"note: {n}" for n in notes], "", tune.format_report(report)])
    return report, text


def run_plots(run: Path, overrides: list[str], out: Path | None) -> list[Path]:
    out = out or RunLayout.at(run).root / "reports" / "plots"
    with manifest(run, overrides) as (frame, config):
        return plots.write_plots(frame, thresholds(config), out) + semantic_eps_plot(run, frame, config, out)


def semantic_eps_plot(run: Path, frame: pl.LazyFrame, config: RunConfig, out: Path) -> list[Path]:
    """semantic_eps.png: the share of rows semantic dedup alone removes at each eps its stored pairs allow."""
    from dedup.cluster import DETECTOR
    from dedup.semantic import removed_by_eps

    files = repick.pairs_layout(run).pairs_files()
    if not config.dedup.semantic.enabled or not files:
        return []
    pairs = pl.scan_parquet([str(f) for f in files]).filter(pl.col(DETECTOR) == "semantic").collect()
    semantic = config.dedup.semantic
    top = max(semantic.eps, semantic.store_eps or 0.0)
    rows = frame.filter(pl.col(col.STATUS) == Status.SUCCESS).select(pl.len()).collect().item()
    counts = removed_by_eps(pairs, [float(e) for e in np.linspace(0.0, top, 11)], config.dedup.keep.mode)
    png = plots.removal_curve_png([(eps, n / max(rows, 1)) for eps, n in counts], semantic.eps,
                                  "Semantic dedup: rows removed per eps", "eps (pairs at cosine >= 1 - eps)")
    path = out / "semantic_eps.png"
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return [path]


def default_export_name(overrides: list[str]) -> str:
    return "export-" + hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()[:8]


def run_export(run: Path, overrides: list[str], name: str | None, out: Path | None) -> tuple[Path, dict]:
    from pipelines.tools.reexport import write_reexport  # the partitioned survivors' tasks: tune must not import them

    name = name or default_export_name(overrides)
    target = out or reexport.export_dir(run.resolve(), name)
    config = load_config(run, overrides).model_copy(update={"output_dir": str(target)})
    record = {"name": name, "overrides": list(overrides)}
    return target, write_reexport(run, config, target, record, dump_config(config))


def run_audit(run: Path, overrides: list[str], reason: str | None, limit: int, out: Path | None) -> Path:
    with manifest(run, overrides) as (frame, config):
        html = audit.report(frame, thresholds(config), reexport.images_root(run), reason, limit, str(run))
    path = out or RunLayout.at(run).root / "reports" / "audit.html"
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path


def run_card(run: Path, out: Path | None, overrides: list[str] = ()) -> tuple[Path, Path]:
    """RUN/reports/DATASET_CARD.md and dataset_card.json, from the manifest and run.json alone (``--set
    card.license_columns=[...]`` names the input's licence columns)."""
    layout = RunLayout.at(run)
    info = read_json(layout.run_json)
    config = load_config(run, overrides).card
    built = card.build_card(reexport.scan_manifest(layout), info, str(run), config)
    folder = out or layout.root / "reports"
    json_path, md_path = folder / "dataset_card.json", folder / "DATASET_CARD.md"
    write_json(built, json_path)
    with atomic_path(md_path) as tmp:
        tmp.write_text(card.render_markdown(built), encoding="utf-8")
    return md_path, json_path
