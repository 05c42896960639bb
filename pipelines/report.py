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


def counts(manifest: pl.DataFrame) -> dict:
    """Rows, kept, rejected, per status and per reject reason (a row counts once under each of its reasons)."""
    reasons = manifest.select(pl.col(col.REJECT_REASONS).explode().drop_nulls().value_counts(sort=True))
    by_reason = {r[col.REJECT_REASONS]: r["count"] for r in reasons.unnest(col.REJECT_REASONS).to_dicts()}
    by_status = dict(manifest.group_by(col.STATUS).len().sort(col.STATUS).iter_rows())
    kept = int(manifest[col.KEEP].sum())
    return {"rows": manifest.height, "kept": kept, "rejected": manifest.height - kept,
            "status": by_status, "reject_reasons": by_reason, "blocklists": blocklist_counts(manifest)}


def blocklist_counts(manifest: pl.DataFrame) -> dict[str, int]:
    """Rows blocked per known-hash list (``crawl.blocklists``); empty when none matched or none was set."""
    if col.BLOCKLIST not in manifest.columns:
        return {}
    return dict(manifest.get_column(col.BLOCKLIST).drop_nulls().value_counts(sort=True).iter_rows())


def summary_table(stats: dict, root: Path) -> str:
    lines = [f"Thresher run: {root}", "",
             f"  {'input rows':<36}{stats['rows']:>10}",
             f"  {'kept':<36}{stats['kept']:>10}",
             f"  {'rejected':<36}{stats['rejected']:>10}", "", "  ingest status"]
    lines += [f"    {k:<34}{v:>10}" for k, v in stats["status"].items()]
    lines += ["", "  reject reasons (a row may have several)"]
    lines += [f"    {k:<34}{v:>10}" for k, v in stats["reject_reasons"].items()] or ["    (none)"]
    lines += ["", f"  shards    {root / 'shards'}", f"  manifest  {root / 'manifest.parquet'}",
              f"  run.json  {root / 'run.json'}"]
    return "\n".join(lines)
