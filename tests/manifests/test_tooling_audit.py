"""thresher audit in a real headless Chromium, loaded from file://."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import polars as pl
import pytest

from chromium_cdp import Browser
from tooling_support import REPO, SCRIPT_CAPTION, AestheticSection, ClipSection, NsfwSection, ScoreFilters
from filters.decide import decide
from manifests import audit
from manifests import plots
from manifests import schema as col
from manifests.plots import Threshold
from manifests.reexport import read_manifest
from manifests.schema import Reason, Status
from pipelines.cli.main import main

pytestmark = pytest.mark.slow
LIMIT = 6
FILTERS = ScoreFilters(clip=ClipSection(min_score=0.25), aesthetic=AestheticSection(min_score=4.5),
                       nsfw=NsfwSection(max_prob=0.5))
THRESHOLDS = [Threshold(col.CLIP_SCORE, 0.25, "min clip_score_low"),
              Threshold(col.AESTHETIC_SCORE, 4.5, "min aesthetic_low"), Threshold(col.NSFW_PROB, 0.5, "max nsfw")]
HOSTILE_URL = 'javascript:alert(1)//"><img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def audit_run(real_run, tmp_path_factory):
    """The real run's staged images, its manifest given seeded scores and re-decided with score thresholds."""
    root = tmp_path_factory.mktemp("audit") / "run"
    shutil.copytree(real_run, root)
    manifest = read_manifest(root)
    shutil.rmtree(root / "manifest")  # re-decided below into one file: the one-file layout, as a small run may have
    rng = np.random.default_rng(7)
    n = manifest.height
    ok = (manifest[col.STATUS] == Status.SUCCESS).to_numpy()
    hostile = (manifest[col.CAPTION] == SCRIPT_CAPTION).to_numpy()
    assert hostile.sum() == 1 and ok[hostile].all()
    nsfw = np.where(hostile | (rng.random(n) < 0.08), rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.3, n))

    def score(values: np.ndarray) -> pl.Series:
        return pl.Series(values.astype(np.float32)).set(pl.Series(~ok), None)

    manifest = manifest.with_columns(
        score(rng.normal(0.3, 0.05, n)).alias(col.CLIP_SCORE),
        score(rng.normal(5.2, 0.8, n)).alias(col.AESTHETIC_SCORE),
        score(nsfw).alias(col.NSFW_PROB),
        pl.when(pl.col(col.STATUS) != Status.SUCCESS).then(pl.lit(HOSTILE_URL)).otherwise(pl.col(col.URL))
        .alias(col.URL),
    )
    decide(manifest, FILTERS).collect().write_parquet(root / "manifest.parquet")
    return root


@pytest.fixture(scope="module")
def page(audit_run, chromium):
    html = audit.report(pl.scan_parquet(audit_run / "manifest.parquet"), THRESHOLDS, audit_run, limit=LIMIT,
                        title="audit test")
    path = audit_run.parent / "audit.html"
    path.write_text(html, encoding="utf-8")
    with Browser(chromium) as browser:
        browser.goto(path.as_uri())
        yield browser


def test_loads_from_file_without_console_errors(page):
    assert page.evaluate("location.protocol") == "file:"
    assert page.evaluate("document.readyState") == "complete"
    assert page.errors() == []
    artifacts = REPO / "test-artifacts"
    page.screenshot(artifacts / "audit.png")
    assert (artifacts / "audit.png").stat().st_size > 10_000


def test_rejected_samples_per_reason(page, audit_run):
    rows = pl.read_parquet(audit_run / "manifest.parquet").to_dicts()
    expected = Counter(r for row in rows for r in row[col.REJECT_REASONS])
    assert {Reason.NSFW, Reason.CLIP_LOW, Reason.AESTHETIC_LOW, Reason.IMAGE_TOO_SMALL} <= set(expected)
    shown = page.evaluate("Object.fromEntries([...document.querySelectorAll('section.reason')].map("
                          "s => [s.dataset.reason, [s.querySelectorAll('.card:not(.survivor)').length, "
                          "+s.dataset.total]]))")
    assert shown == {r: [min(n, LIMIT), n] for r, n in expected.items()}


def test_script_caption_is_text_and_never_runs(page):
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.scripts.length") == 1  # ours only
    captions = page.evaluate("[...document.querySelectorAll('.caption')].map(e => e.textContent)")
    assert SCRIPT_CAPTION in captions
    links = page.evaluate("[...document.querySelectorAll('.card a')].map(a => a.href)")
    assert links and all(h.startswith("http://127.0.0.1") for h in links)  # the javascript: URL is no link
    assert HOSTILE_URL in page.evaluate("[...document.querySelectorAll('.url')].map(e => e.textContent)")
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0


def test_nsfw_thumbnails_blurred_until_clicked(page, audit_run):
    rows = pl.read_parquet(audit_run / "manifest.parquet")
    nsfw_ids = set(rows.filter(pl.col(col.REJECT_REASONS).list.contains(Reason.NSFW))[col.SAMPLE_ID])
    cards = page.evaluate("[...document.querySelectorAll('.card')].map(c => { const i = c.querySelector('img');"
                          " return [c.dataset.sampleId, i ? getComputedStyle(i).filter : null]; })")
    assert any(sid in nsfw_ids for sid, _ in cards)
    for sid, css in cards:
        if css is None:  # a failed download has no image to blur; NSFW rows were all scored, so staged
            assert sid not in nsfw_ids
            continue
        assert ("blur" in css) == (sid in nsfw_ids), sid
    first = "document.querySelector('img.blurred')"
    page.evaluate(f"{first}.click()")
    assert page.evaluate("getComputedStyle(document.querySelector('img.blurred.revealed')).filter") == "none"
    page.evaluate("document.querySelector('img.blurred.revealed').click()")
    assert "blur" in page.evaluate(f"getComputedStyle({first}).filter")


def test_borderline_kept_nearest_each_threshold(page, audit_run):
    rows = pl.read_parquet(audit_run / "manifest.parquet").filter(pl.col(col.KEEP))
    for t in THRESHOLDS:
        want = rows.drop_nulls(t.column).with_columns(d=(pl.col(t.column) - t.value).abs()).sort("d")
        got = page.evaluate(f"[...document.querySelectorAll('section.borderline[data-column=\"{t.column}\"] .card')]"
                            ".map(c => c.dataset.sampleId)")
        assert len(got) == LIMIT
        assert set(got) <= set(want[col.SAMPLE_ID][:LIMIT + 2])  # ties at the cut may swap places
    scores = plots.score_columns(pl.read_parquet(audit_run / "manifest.parquet").columns)
    assert col.DUP_SIMILARITY in scores  # the demo config runs dedup
    assert page.evaluate("document.querySelectorAll('.plots img').length") == len(scores) + 1  # + reasons


def test_cli_audit_with_reason_and_limit(audit_run, tmp_path, capsys):
    out = tmp_path / "nsfw.html"
    assert main(["audit", str(audit_run), "--reason", Reason.NSFW, "--limit", "3", "--out", str(out)]) == 0
    html = out.read_text()
    borderline_sections = html.count('<section class="borderline"')
    assert html.count('class="card"') == 3 * (1 + borderline_sections) and html.count('class="reason"') == 1
    assert "&lt;script&gt;" in html and SCRIPT_CAPTION not in html
    assert main(["audit", str(audit_run), "--reason", "no_such_reason"]) == 2
    assert "reasons here" in capsys.readouterr().err


PAIRS_JS = """[...document.querySelectorAll('section.reason[data-reason^="duplicate_"] .pair')].map(p => {
  const cards = p.querySelectorAll('.card');
  return [p.dataset.sampleId, p.dataset.survivorId, [...cards].map(c => c.dataset.sampleId),
          cards[1].classList.contains('survivor'), p.querySelector('.link').textContent,
          p.querySelectorAll('img.thumb').length];
})"""


def test_duplicates_shown_beside_their_survivor(page, audit_run):
    """Each rejected duplicate sits next to the sample it duplicates, with the kind, detector and similarity."""
    by_id = {r[col.SAMPLE_ID]: r for r in pl.read_parquet(audit_run / "manifest.parquet").iter_rows(named=True)}
    pairs = page.evaluate(PAIRS_JS)
    assert pairs, "the demo run has duplicates"
    for sid, survivor, cards, marked, link, images in pairs:
        row = by_id[sid]
        assert cards == [sid, survivor] and survivor == row[col.DUPLICATE_OF] and marked
        assert by_id[survivor][col.DUPLICATE_OF] is None  # a survivor, not another duplicate
        assert row[col.DUP_KIND] in link and row[col.DUP_DETECTOR] in link
        assert f"{row[col.DUP_SIMILARITY]:.3f}" in link
        assert images == 2  # both thumbnails
    lone = page.evaluate("document.querySelectorAll('section.reason[data-reason^=\"duplicate_\"] .cards > .card')"
                         ".length")
    assert lone == 0
