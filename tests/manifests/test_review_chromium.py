"""thresher review driven in a real headless Chromium: a slider, a flipped sample, ten keyboard labels, export."""

from __future__ import annotations

import asyncio
import time

import pytest

from chromium_cdp import Browser
from review_support import HOSTILE_URL, review_run, served  # noqa: F401
from tooling_support import REPO, SCRIPT_CAPTION
from pipelines.tools.commands import run_tune

NSFW = "filters.nsfw.max_prob"


def wait_for(browser: Browser, expression: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.evaluate(expression)
        if value:
            return value
        browser.loop.run_until_complete(asyncio.sleep(0.1))
    raise TimeoutError(f"{expression} stayed falsy")


def press(browser: Browser, key: str) -> None:
    for kind in ("keyDown", "keyUp"):
        browser.send("Input.dispatchKeyEvent", type=kind, key=key, text=key if kind == "keyDown" else "",
                     code=f"Key{key.upper()}", windowsVirtualKeyCode=ord(key.upper()))


def click(browser: Browser, selector: str) -> None:
    box = browser.evaluate(f"(() => {{ const e = document.querySelector({selector!r}); e.scrollIntoView();"
                           " const r = e.getBoundingClientRect();"
                           " return [r.x + r.width / 2, r.y + Math.min(r.height / 2, 20)]; })()")
    for kind in ("mousePressed", "mouseReleased"):
        browser.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


@pytest.fixture(scope="module")
def page(served, chromium):
    with Browser(chromium) as browser:
        browser.send("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        browser.goto(served.url)
        wait_for(browser, "document.body.dataset.ready === '1'")
        yield browser


def kept_shown(page: Browser) -> int:
    return int(page.evaluate("document.getElementById('totals').dataset.kept"))


def test_the_token_leaves_the_address_and_nothing_errs(page, review_run):
    assert "token" not in page.evaluate("location.href")
    assert page.errors() == []
    assert kept_shown(page) == run_tune(review_run, [])[0].kept_after


def test_moving_a_slider_changes_the_counts_to_tunes(page, review_run):
    before = kept_shown(page)
    page.evaluate(f"(() => {{ const r = document.querySelector('input[type=range][data-key=\"{NSFW}\"]');"
                  " r.focus(); })()")
    for _ in range(40):  # the keyboard moves a range input one step (1/200 of its span) per press
        page.send("Input.dispatchKeyEvent", type="keyDown", key="ArrowLeft", code="ArrowLeft", windowsVirtualKeyCode=37)
        page.send("Input.dispatchKeyEvent", type="keyUp", key="ArrowLeft", code="ArrowLeft", windowsVirtualKeyCode=37)
    wait_for(page, f"document.getElementById('totals').dataset.kept != '{before}' && "
                   "document.getElementById('busy').hidden")
    value = float(page.evaluate(f"document.querySelector('input.num[data-key=\"{NSFW}\"]').value"))
    assert value < 0.5
    assert kept_shown(page) == run_tune(review_run, [f"{NSFW}={value}"])[0].kept_after < before
    rows = page.evaluate("[...document.querySelectorAll('#counts tr[data-reason=nsfw] td')].map(t => t.textContent)")
    assert int(rows[2].replace(",", "")) > int(rows[1].replace(",", ""))


def test_opening_a_flipped_sample(page):
    wait_for(page, "document.querySelectorAll('#flips-rejected .card').length > 0")
    click(page, "#flips-rejected .card .caption")
    wait_for(page, "!document.getElementById('sample').hidden")
    row = page.evaluate("document.querySelector('#flips-rejected .card').dataset.sample")
    fields = page.evaluate("[...document.querySelectorAll('#sample-fields td')].map(t => t.textContent)")
    assert row in fields and "nsfw_prob" in fields
    assert "nsfw" in page.evaluate("document.querySelector('#sample-pair .pending').textContent")
    blurred = "#sample-pair img.blurred"
    assert not page.evaluate(f"document.querySelector({blurred!r}).classList.contains('revealed')")
    click(page, blurred)
    assert page.evaluate(f"document.querySelector({blurred!r}).classList.contains('revealed')")
    press_escape = {"type": "keyDown", "key": "Escape", "code": "Escape", "windowsVirtualKeyCode": 27}
    page.send("Input.dispatchKeyEvent", **press_escape)
    wait_for(page, "document.getElementById('sample').hidden")


def test_hostile_caption_and_url_are_text(page):
    page.evaluate("document.querySelector('nav button[data-tab=browse]').click()")
    page.evaluate("document.querySelector('#browse-form input[name=caption]').value = 'script'")
    page.evaluate("document.querySelector('#browse-form button[type=submit]').click()")
    wait_for(page, "document.querySelectorAll('#browse-grid .card').length === 1")
    assert page.evaluate("document.querySelector('#browse-grid .caption').textContent") == SCRIPT_CAPTION
    assert page.evaluate("document.querySelector('#browse-grid .url').textContent") == HOSTILE_URL
    assert page.evaluate("document.querySelectorAll('#browse-grid script, #browse-grid img[src=x]').length") == 0
    assert page.evaluate("window.__pwned") is None
    assert not any("pwned" in e for e in page.errors())


def set_number(page: Browser, key: str, value: float) -> None:
    page.evaluate(f"(() => {{ const n = document.querySelector('input.num[data-key=\"{key}\"]'); n.value = '{value}';"
                  " n.dispatchEvent(new Event('change')); })()")
    page.loop.run_until_complete(asyncio.sleep(0.4))  # past the page's 150 ms debounce: the request is out
    wait_for(page, "document.getElementById('busy').hidden")


def test_ten_keyboard_labels_survive_a_reload(page, served):
    set_number(page, NSFW, 0.2)  # enough NSFW rejections to draw ten from
    page.evaluate("document.querySelector('nav button[data-tab=label]').click()")
    page.evaluate("document.getElementById('label-rule').value = 'nsfw'")
    page.evaluate("document.getElementById('label-n').value = '10'")
    page.evaluate("document.getElementById('label-draw').click()")
    wait_for(page, "!!document.querySelector('#label-card .card')")
    page.evaluate("document.activeElement.blur()")
    labelled = {}
    for i, key in enumerate("gbgbbgbggb"):
        sample = wait_for(page, f"document.getElementById('label-status').textContent.startsWith('sample {i + 1} ') && "
                                "document.querySelector('#label-card .card').dataset.sample")
        press(page, key)
        labelled[sample] = {"g": "good", "b": "bad"}[key]
    wait_for(page, "document.getElementById('label-done').dataset.count === '10'")
    page.goto(served.base + "/")
    wait_for(page, "document.body.dataset.ready === '1'")
    found = page.evaluate("Object.fromEntries([...document.querySelectorAll('#label-done .labelled')]"
                          ".map(e => [e.dataset.sample, e.dataset.label]))")
    assert found == labelled
    page.evaluate("document.querySelector('nav button[data-tab=estimates]').click()")
    wait_for(page, "!!document.querySelector('#estimates tr[data-rule=nsfw]')")


def test_export_shows_the_snippet_and_command(page, review_run):
    set_number(page, NSFW, 0.3)
    page.evaluate("document.querySelector('nav button[data-tab=export]').click()")
    page.evaluate("document.getElementById('export-btn').click()")
    wait_for(page, "document.getElementById('command').textContent")
    assert page.evaluate("document.getElementById('snippet').textContent") == "filters:\n  nsfw:\n    max_prob: 0.3\n"
    assert page.evaluate("document.getElementById('command').textContent") == \
        f"thresher reexport {review_run} --set {NSFW}=0.3"
    page.evaluate("document.querySelector('nav button[data-tab=flips]').click()")
    wait_for(page, "document.querySelectorAll('#flips-rejected .card').length > 0")
    assert page.errors() == []
    shot = page.screenshot(REPO / "test-artifacts" / "review.png", width=1400)
    assert shot.stat().st_size > 10_000
