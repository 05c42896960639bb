"""A self-contained static HTML audit of a manifest: what was rejected and why, and the borderline kept.

One file: thumbnails and histograms are ``data:`` URIs, the CSS and the few lines of JS are inline
and pinned by a Content-Security-Policy hash, so it opens from ``file://`` with no server and
nothing else can load or run. Every caption, URL and reason comes from the open web or the data
and is HTML-escaped; links are made only for http(s) URLs. Samples rejected as NSFW are blurred
until clicked.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from html import escape
from pathlib import Path

import polars as pl

from manifests import schema as col
from manifests.plots import Threshold, plot_pngs, reason_counts, score_columns
from manifests.schema import Reason
from manifests.thumbnails import data_uri, thumbnails

DETAIL_COLUMNS = (col.STATUS, col.ERROR, col.WIDTH, col.HEIGHT, col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT,
                  col.CLUSTER_ID, col.DUPLICATE_OF, col.DUP_KIND, col.DUP_DETECTOR, col.CAPTION_BLIP2,
                  col.CAPTION_LLAVA)
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{margin-top:0}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table.summary td{padding:.1rem .8rem}.num{text-align:right;font-variant-numeric:tabular-nums}
.plots img{max-width:48%;margin:.3rem;border:1px solid #ddd;background:#fff}
.cards{display:flex;flex-wrap:wrap;gap:.8rem}
.card{width:230px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5rem;font-size:.8rem;
overflow-wrap:anywhere}
.thumb{width:210px;height:160px;object-fit:contain;background:#eee;display:block}
.noimg{width:210px;height:160px;background:#eee;color:#777;display:flex;align-items:center;justify-content:center}
.blurred{cursor:pointer}.blurred:not(.revealed){filter:blur(18px)}
.caption{font-weight:600;margin:.3rem 0}.url{color:#555}.reasons{color:#c62828}
.scores td{padding:0 .3rem}.scores td:first-child{white-space:nowrap}.more{color:#666}
.pair{display:flex;align-items:center;gap:.4rem;border:1px dashed #bbb;border-radius:8px;padding:.4rem}
.link{width:90px;text-align:center;font-size:.75rem;color:#444}.link b{display:block;font-size:.9rem}
.survivor{border-color:#2e7d32}
"""
SCRIPT = """
document.querySelectorAll('.blurred').forEach(function (el) {
  el.addEventListener('click', function () { el.classList.toggle('revealed'); });
});
"""


@dataclass(frozen=True)
class AuditSelection:
    rows: int
    kept: int
    reasons: dict[str, int]  # every reason in the manifest -> rows rejected with it
    rejected: dict[str, pl.DataFrame]  # shown reason -> its first ``limit`` rows
    borderline: list[tuple[Threshold, pl.DataFrame]]  # kept rows nearest each threshold
    survivors: pl.DataFrame  # the rows that the shown duplicates duplicate


def select(manifest: pl.LazyFrame, thresholds: list[Threshold], reason: str | None, limit: int) -> AuditSelection:
    if limit < 1:
        raise ValueError(f"--limit {limit}: show at least 1 sample per reason")
    reasons = reason_counts(manifest)
    if reason is not None and reason not in reasons:
        raise ValueError(f"--reason {reason!r}: no row is rejected for it; reasons here: {', '.join(reasons)}")
    shown = [reason] if reason is not None else list(reasons)
    rejected = {r: manifest.filter(pl.col(col.REJECT_REASONS).list.contains(r)).sort(col.SAMPLE_ID)
                .head(limit).collect() for r in shown}
    names = set(manifest.collect_schema().names())
    borderline = [(t, manifest.filter(pl.col(col.KEEP) & pl.col(t.column).is_not_null())
                   .sort((pl.col(t.column) - t.value).abs()).head(limit).collect())
                  for t in thresholds if t.column in names]
    totals = manifest.select(pl.len().alias("rows"), pl.col(col.KEEP).sum().alias("kept")).collect()
    return AuditSelection(totals["rows"][0], int(totals["kept"][0] or 0), reasons, rejected, borderline,
                          _survivors(manifest, list(rejected.values())))


def _survivors(manifest: pl.LazyFrame, shown: list[pl.DataFrame]) -> pl.DataFrame:
    ids = sorted({s for f in shown if col.DUPLICATE_OF in f.columns for s in f[col.DUPLICATE_OF].drop_nulls()})
    return manifest.filter(pl.col(col.SAMPLE_ID).is_in(ids)).collect()


def locations(selection: AuditSelection) -> dict[str, tuple[str, str]]:
    """sample_id -> (shard, member) of every row the report shows that has a staged image."""
    frames = [*selection.rejected.values(), *(f for _, f in selection.borderline), selection.survivors]
    found = {}
    for frame in frames:
        if col.SHARD in frame.columns and col.MEMBER in frame.columns:
            for sid, shard, member in frame.select(col.SAMPLE_ID, col.SHARD, col.MEMBER).iter_rows():
                if shard and member:
                    found[sid] = (shard, member)
    return found


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _link(url: str | None) -> str:
    if not url:
        return '<div class="url">(no URL)</div>'
    text = escape(url)
    if url.lower().startswith(("http://", "https://")):
        return f'<div class="url"><a href="{text}" rel="noopener noreferrer nofollow">{text}</a></div>'
    return f'<div class="url">{text}</div>'


def _image(row: dict, thumbs: dict[str, str]) -> str:
    uri = thumbs.get(row[col.SAMPLE_ID])
    if uri is None:
        return f'<div class="noimg">no image ({escape(str(row.get(col.STATUS) or "not staged"))})</div>'
    nsfw = Reason.NSFW in (row.get(col.REJECT_REASONS) or [])
    extra = ' blurred" title="rejected as NSFW: click to reveal' if nsfw else ""
    return f'<img class="thumb{extra}" alt="sample {escape(row[col.SAMPLE_ID])}" src="{uri}">'


def card(row: dict, thumbs: dict[str, str], scores: list[str], role: str = "") -> str:
    cells = [(c, row.get(c)) for c in (*scores, *DETAIL_COLUMNS) if row.get(c) is not None]
    table = "".join(f"<tr><td>{escape(c)}</td><td class=\"num\">{escape(_fmt(v))}</td></tr>" for c, v in cells)
    reasons = ", ".join(escape(r) for r in row.get(col.REJECT_REASONS) or []) or "kept"
    return (f'<div class="card{role}" data-sample-id="{escape(row[col.SAMPLE_ID])}">{_image(row, thumbs)}'
            f'<div class="caption">{escape(row.get(col.CAPTION) or "")}</div>{_link(row.get(col.URL))}'
            f'<div class="sid">{escape(row[col.SAMPLE_ID])}</div><div class="reasons">{reasons}</div>'
            f'<table class="scores">{table}</table></div>')


def _cards(frame: pl.DataFrame, thumbs: dict[str, str], scores: list[str],
           survivors: dict[str, dict] | None = None) -> str:
    """A card per row; a duplicate's card beside its survivor's, with the link between them."""
    parts = []
    for row in frame.iter_rows(named=True):
        survivor_id = row.get(col.DUPLICATE_OF) if survivors is not None else None
        parts.append(card(row, thumbs, scores) if survivor_id is None else _pair(row, survivors, thumbs, scores))
    return '<div class="cards">' + "".join(parts) + "</div>"


def _pair(row: dict, survivors: dict[str, dict], thumbs: dict[str, str], scores: list[str]) -> str:
    survivor_id = row[col.DUPLICATE_OF]
    survivor = survivors.get(survivor_id)
    other = (card(survivor, thumbs, scores, " survivor") if survivor is not None
             else f'<div class="noimg survivor">{escape(survivor_id)} is not in this manifest</div>')
    similarity = row.get(col.DUP_SIMILARITY)
    link = (f'<div class="link"><b>{escape(row.get(col.DUP_KIND) or "")}</b>{escape(row.get(col.DUP_DETECTOR) or "")}'
            f'<br>{"" if similarity is None else f"{similarity:.3f}"}<br>duplicate of &rarr;</div>')
    return (f'<div class="pair" data-sample-id="{escape(row[col.SAMPLE_ID])}" data-survivor-id="{escape(survivor_id)}">'
            f"{card(row, thumbs, scores)}{link}{other}</div>")


def _summary(selection: AuditSelection) -> str:
    rows = [("rows", selection.rows), ("kept", selection.kept), ("rejected", selection.rows - selection.kept)]
    rows += [(f"rejected: {r}", n) for r, n in selection.reasons.items()]
    body = "".join(f'<tr><td>{escape(k)}</td><td class="num">{v:,}</td></tr>' for k, v in rows)
    return f'<h2 id="summary">Summary</h2><table class="summary">{body}</table>'


def _rejected(selection: AuditSelection, thumbs: dict[str, str], scores: list[str]) -> str:
    parts = ['<h2 id="rejected">Rejected, by reason</h2>']
    survivors = {r[col.SAMPLE_ID]: r for r in selection.survivors.iter_rows(named=True)}
    for i, (reason, frame) in enumerate(selection.rejected.items()):
        total = selection.reasons[reason]
        parts.append(f'<section class="reason" id="reason-{i}" data-reason="{escape(reason)}" data-total="{total}">'
                     f'<h3>{escape(reason)} <span class="more">({frame.height:,} shown of {total:,})</span></h3>'
                     f"{_cards(frame, thumbs, scores, survivors)}</section>")
    return "".join(parts)


def _borderline(selection: AuditSelection, thumbs: dict[str, str], scores: list[str]) -> str:
    parts = ['<h2 id="borderline">Kept, nearest each threshold</h2>']
    if not selection.borderline:
        parts.append("<p>No score threshold is configured for a score this manifest has.</p>")
    for t, frame in selection.borderline:
        parts.append(f'<section class="borderline" data-column="{escape(t.column)}">'
                     f"<h3>{escape(t.label)} = {t.value:g} ({escape(t.column)})</h3>{_cards(frame, thumbs, scores)}"
                     "</section>")
    return "".join(parts)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render(selection: AuditSelection, thumbs: dict[str, str], plots: dict[str, bytes], title: str,
           scores: list[str]) -> str:
    """The whole report as one HTML document."""
    csp = (f"default-src 'none'; img-src data:; style-src {_csp_hash(STYLE)}; script-src {_csp_hash(SCRIPT)}; "
           "base-uri 'none'; form-action 'none'")
    images = "".join(f'<img alt="{escape(n)}" src="{data_uri(d, "image/png")}">' for n, d in plots.items())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>Thresher audit: {escape(title)}</h1>{_summary(selection)}"
            f'<h2 id="plots">Distributions</h2><div class="plots">{images}</div>'
            f"{_rejected(selection, thumbs, scores)}{_borderline(selection, thumbs, scores)}"
            f"<script>{SCRIPT}</script></body></html>")



def report(manifest: pl.LazyFrame, thresholds: list[Threshold], images_root: Path, reason: str | None = None,
           limit: int = 24, title: str = "") -> str:
    """The audit of ``manifest`` (its own keep / reject_reasons), thumbnails read from ``images_root``."""
    selection = select(manifest, thresholds, reason, limit)
    thumbs = thumbnails(images_root, locations(selection))
    scores = score_columns(manifest.collect_schema().names())
    return render(selection, thumbs, plot_pngs(manifest, thresholds), title, scores)
