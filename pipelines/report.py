"""run.json and the end-of-run summary table, both computed from the manifest itself."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import polars as pl

from manifests import schema as col

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
    source = Path(__file__).resolve().parent.parent
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


def summary_table(stats: dict, root: Path) -> str:
    lines = [f"Thresher run: {root}", "",
             f"  {'input rows':<36}{stats['rows']:>10}",
             f"  {'kept':<36}{stats['kept']:>10}",
             f"  {'rejected':<36}{stats['rejected']:>10}", "", "  ingest status"]
    lines += [f"    {k:<34}{v:>10}" for k, v in stats["status"].items()]
    lines += ["", "  reject reasons (a row may have several)"]
    lines += [f"    {k:<34}{v:>10}" for k, v in stats["reject_reasons"].items()] or ["    (none)"]
    lines += ["", f"  shards    {root / 'shards'}", f"  manifest  {root / 'manifest'}/",
              f"  run.json  {root / 'run.json'}"]
    return "\n".join(lines)
