"""run.json and the end-of-run summary table, both computed from the manifest itself."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import polars as pl

from manifests import schema as col
from manifests.io import parquet_rows
from manifests.layout import RunLayout

PACKAGES = ("thresher", "ray", "pyarrow", "polars", "torch", "torchvision", "open_clip_torch", "transformers",
            "onnxruntime", "faiss-cpu", "datasketch", "webdataset", "pillow", "aiohttp")
COMPLIANCE_PACKAGES = ("protego", "c2pa-python", "pdqhash")  # robots.txt, C2PA and PDQ: the card names them


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in PACKAGES + COMPLIANCE_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_revision() -> str | None:
    source = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def counts(manifest: pl.LazyFrame) -> dict:
    """Rows, kept, rejected, per status and per reject reason (a row counts once under each of its reasons).
    Aggregations only, streamed over the manifest's part files."""
    def grouped(column: pl.Expr, name: str) -> list[tuple]:
        return (manifest.select(column.alias(name)).drop_nulls().group_by(name).len()
                .collect(engine="streaming").sort(["len", name], descending=[True, False]).iter_rows())

    totals = manifest.select(pl.len().alias("rows"), pl.col(col.KEEP).sum().alias("kept")).collect(engine="streaming")
    rows, kept = int(totals["rows"][0]), int(totals["kept"][0] or 0)
    status = dict(sorted(grouped(pl.col(col.STATUS), col.STATUS)))
    return {"rows": rows, "kept": kept, "rejected": rows - kept, "status": status,
            "reject_reasons": dict(grouped(pl.col(col.REJECT_REASONS).explode(), col.REJECT_REASONS)),
            "blocklists": blocklist_counts(manifest)}


def blocklist_counts(manifest: pl.LazyFrame) -> dict[str, int]:
    """Rows blocked per known-hash list (``crawl.blocklists``); empty when none matched or none was set."""
    if col.BLOCKLIST not in manifest.collect_schema().names():
        return {}
    found = (manifest.select(pl.col(col.BLOCKLIST)).drop_nulls().group_by(col.BLOCKLIST).len()
             .collect(engine="streaming").sort(["len", col.BLOCKLIST], descending=[True, False]))
    return dict(found.iter_rows())


def _row(label: str, value: object) -> str:
    return f"  {label:<36}{value!s:>10}"


def count_lines(stats: dict) -> list[str]:
    """Rows, kept, rejected, per status and per reject reason: the body of the run's summary."""
    lines = [_row("input rows", stats["rows"]), _row("kept", stats["kept"]), _row("rejected", stats["rejected"]),
             "", "  ingest status"]
    lines += [f"    {k:<34}{v:>10}" for k, v in stats["status"].items()]
    lines += ["", "  reject reasons (a row may have several)"]
    lines += [f"    {k:<34}{v:>10}" for k, v in stats["reject_reasons"].items()] or ["    (none)"]
    return lines


def summary_table(stats: dict, root: Path) -> str:
    lines = [f"Thresher run: {root}", "", *count_lines(stats)]
    lines += ["", f"  shards    {root / 'shards'}", f"  manifest  {root / 'manifest'}/",
              f"  run.json  {root / 'run.json'}"]
    return "\n".join(lines)


def phase_table(name: str, result: dict, layout: RunLayout, next_phase: str | None) -> str:
    """What ``thresher PHASE`` prints after one phase: the same kind of table as the run's, from its files."""
    lines = [f"Thresher {name}: {layout.root}", "", *_PHASE_LINES[name](result, layout), "",
             _row("wall time (s)", f"{result.get('wall_s', 0):.1f}")]
    if next_phase is not None:
        lines.append(f"  next      thresher {next_phase} {layout.root}, or thresher run {layout.root} for every phase left")
    lines.append(f"  run.json  {layout.run_json}")
    return "\n".join(lines)


def _ingest_lines(result: dict, layout: RunLayout) -> list[str]:
    files = layout.staged_row_files()
    status = {} if not files else dict(sorted(
        pl.scan_parquet([str(f) for f in files]).group_by(col.STATUS).len().collect(engine="streaming").iter_rows()))
    lines = [_row("input rows", sum(status.values())), _row("units staged now", f"{result['units_run']} of {result['units']}"),
             "", "  ingest status"]
    return lines + [f"    {k:<34}{v:>10}" for k, v in status.items()]


def _stage_lines(result: dict, files: list[Path], label: str) -> list[str]:
    return [_row("stages", ", ".join(result.get("stages", {})) or "(none enabled)"), _row(label, parquet_rows(files))]


def _dedup_lines(result: dict, layout: RunLayout) -> list[str]:
    pairs = result.get("pairs", {})
    lines = [_row("detectors", ", ".join(result.get("detectors", [])) or "(none enabled)")]
    lines += [_row(f"  {name} pairs", found.get("pairs", 0)) for name, found in pairs.items() if isinstance(found, dict)]
    return lines + [_row("duplicates (rows not kept)", result.get("duplicates", 0))]


def _decide_lines(result: dict, layout: RunLayout) -> list[str]:
    return count_lines(counts(pl.scan_parquet([str(f) for f in layout.decided_files()])))


_PHASE_LINES = {
    "ingest": _ingest_lines,
    "score": lambda result, layout: _stage_lines(result, layout.score_files(), "rows scored"),
    "dedup": _dedup_lines,
    "decide": _decide_lines,
    "caption": lambda result, layout: _stage_lines(
        result, sorted(layout.captions_dir.rglob("*.parquet")) if layout.captions_dir.exists() else [],
        "rows captioned"),
}
