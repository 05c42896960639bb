"""thresher review over HTTP: the token, paths that try to leave the run, tune's counts, labels, estimates."""

from __future__ import annotations

import urllib.request

import numpy as np
import polars as pl
import pytest

from review_support import (DUP_ROW, HOSTILE_ROW, HOSTILE_URL, ROWS, SURVIVOR_ROW, TRAVERSAL_ROW, call,  # noqa: F401
                            review_run, served)
from tooling_support import SCRIPT_CAPTION, tree_hashes
from manifests import schema as col
from pipelines.tools.commands import run_tune
from pipelines.tools.review import labels as lab

SETTINGS = [{}, {"filters.nsfw.max_prob": 0.3}, {"filters.clip.min_score": 0.31, "filters.rules.min_image_side": 400},
            {"filters.aesthetic.min_score": 3.0, "filters.rules.min_caption_words": 5}]


def test_no_token_is_401_and_a_wrong_one_403(served):
    assert call(served, "/api/meta", token=None)[0] == 401
    assert call(served, "/", token=None)[0] == 401
    assert call(served, "/static/review.js", token=None)[0] == 401
    assert call(served, "/api/counts", {"setting": {}}, token="not-it")[0] == 403
    assert call(served, "/api/thumb/0", token=served.token[:-1])[0] == 403
    assert call(served, "/api/meta")[0] == 200


def test_the_printed_url_sets_a_cookie_and_drops_the_token_from_the_address(served):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as found:
        opener.open(served.url, timeout=30)
    assert found.value.code == 302 and found.value.headers["Location"] == "/"
    cookie = found.value.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and served.token in cookie
    request = urllib.request.Request(served.base + "/", headers={"Cookie": cookie.split(";")[0]})
    with urllib.request.urlopen(request, timeout=30) as page:
        assert b"thresher review" in page.read()
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_a_staged_path_leaving_the_run_is_refused(served):
    status, body = call(served, f"/api/thumb/{TRAVERSAL_ROW}")
    assert status == 403 and "leaves the run" in body["error"]
    assert call(served, "/api/thumb/0")[1][:2] == b"\xff\xd8"  # a JPEG thumbnail of a contained one


@pytest.mark.parametrize("path", ["/static/../config.yaml", "/static/%2e%2e/config.yaml", "/static/..%2fconfig.yaml",
                                  "/config.yaml", "/static/review.js/../../manifest/part-00000.parquet",
                                  "/api/thumb/..%2f..%2fconfig.yaml"])
def test_request_paths_never_reach_the_file_system(served, path):
    status, body = call(served, path)
    assert status in (403, 404)
    assert b"output_dir" not in (body if isinstance(body, bytes) else b"")


def test_counts_equal_tune_with_the_same_set(served, review_run):
    for setting in SETTINGS:
        status, body = call(served, "/api/counts", {"setting": setting})
        assert status == 200, body
        report, _ = run_tune(review_run, body["overrides"])
        assert body["report"] == report.as_dict(), setting
    assert call(served, "/api/counts", {"setting": {"filters.nsfw.max_prob": 0.3}})[1]["report"]["kept_after"] \
        != call(served, "/api/counts", {"setting": {}})[1]["report"]["kept_after"]


def test_a_setting_is_only_a_known_threshold_and_a_number(served):
    assert call(served, "/api/counts", {"setting": {"output_dir": 1}})[0] == 400
    assert call(served, "/api/counts", {"setting": {"filters.nsfw.max_prob": "0.2; rm -rf /"}})[0] == 400
    assert call(served, "/api/counts", {"setting": {"filters.nsfw.max_prob": float("nan")}})[0] == 400


def test_hostile_caption_and_url_come_back_as_data(served):
    status, sample = call(served, "/api/sample", {"index": HOSTILE_ROW, "setting": {}})
    assert status == 200
    assert sample["card"]["caption"] == SCRIPT_CAPTION and sample["card"]["url"] == HOSTILE_URL


def test_a_duplicates_page_shows_its_survivor_and_the_link(served):
    sample = call(served, "/api/sample", {"index": DUP_ROW, "setting": {}})[1]
    assert sample["survivor"]["row"] == SURVIVOR_ROW
    assert sample["link"]["detector"] == "phash" and sample["link"]["similarity"] == pytest.approx(0.96)
    assert "duplicate_image" in sample["card"]["reasons"]


def test_flips_are_the_rows_whose_decision_changes(served, review_run):
    setting = {"filters.nsfw.max_prob": 0.3}
    flips = call(served, "/api/flips", {"setting": setting, "which": "newly_rejected"})[1]
    report = run_tune(review_run, ["filters.nsfw.max_prob=0.3"])[0]
    assert flips["total"] == report.newly_rejected > 0
    assert all(c["keep"] and not c["pending_keep"] and "nsfw" in c["pending_reasons"] for c in flips["cards"])
    assert all(c["blur"] for c in flips["cards"])  # NSFW rejections are blurred until clicked


def test_nearest_threshold_rows_sit_either_side(served, review_run):
    near = call(served, "/api/nearest", {"setting": {"filters.clip.min_score": 0.3}, "key": "filters.clip.min_score"})[1]
    below = [c["scores"][col.CLIP_SCORE] for c in near["below"]]
    above = [c["scores"][col.CLIP_SCORE] for c in near["above"]]
    assert below and above and max(below) < 0.3 <= min(above)
    assert below == sorted(below, reverse=True) and above == sorted(above)
    parts = sorted(str(p) for p in (review_run / "manifest").glob("*.parquet"))
    scored = (pl.scan_parquet(parts).with_row_index("row").filter((pl.col(col.STATUS) == "success")
              & pl.col(col.CLIP_SCORE).fill_nan(None).is_not_null()).select("row", col.CLIP_SCORE).collect())
    want_below = scored.filter(pl.col(col.CLIP_SCORE) < 0.3).sort([col.CLIP_SCORE, "row"], descending=[True, False])
    want_above = scored.filter(pl.col(col.CLIP_SCORE) >= 0.3).sort([col.CLIP_SCORE, "row"])
    assert [c["row"] for c in near["below"]] == want_below["row"].head(len(near["below"])).to_list()
    assert [c["row"] for c in near["above"]] == want_above["row"].head(len(near["above"])).to_list()


def test_browse_filters_and_pages(served):
    body = call(served, "/api/browse", {"query": {"caption": "<SCRIPT>"}, "setting": {}})[1]
    assert body["total"] == 1 and body["cards"][0]["row"] == HOSTILE_ROW
    rejected = call(served, "/api/browse", {"query": {"kept": False, "ranges": {col.NSFW_PROB: [0.5, None]}},
                                            "setting": {}})[1]
    assert rejected["total"] > 0 and all(c["scores"][col.NSFW_PROB] >= 0.5 and not c["keep"] for c in rejected["cards"])
    assert call(served, "/api/browse", {"query": {"ranges": {"x\"; DROP": [0, 1]}}, "setting": {}})[0] == 400
    whole = call(served, "/api/browse", {"query": {}, "setting": {}})[1]
    assert whole["total"] == ROWS and [c["row"] for c in whole["cards"]] == list(range(min(ROWS, 60)))


QUERIES = [{"status": "success"}, {"reason": "nsfw"}, {"reason": "status:failed_to_download"}, {"kept": True},
           {"kept": False, "caption": "DOG"}, {"caption": "the b"},
           {"caption": "g."}, {"caption": "(a"},  # regex characters match themselves only
           {"reason": "clip_score_low", "ranges": {col.CLIP_SCORE: [0.2, None]}},
           {"ranges": {col.NSFW_PROB: [None, 0.4], col.AESTHETIC_SCORE: [5.0, None]}}, {"status": "no-such-status"}]


@pytest.mark.parametrize("query", QUERIES)
def test_browse_finds_what_a_sql_filter_over_the_parts_finds(served, review_run, query):
    """The app answers from held columns; DuckDB over the part files is the reference."""
    import duckdb

    clauses = []
    if "status" in query:
        clauses.append(f"status = '{query['status']}'")
    if "reason" in query:
        clauses.append(f"list_contains(reject_reasons, '{query['reason']}')")
    if "kept" in query:
        clauses.append(f"keep = {query['kept']}")
    if "caption" in query:
        clauses.append(f"contains(lower(coalesce(caption, '')), lower('{query['caption']}'))")
    for name, (lo, hi) in query.get("ranges", {}).items():
        clauses += [f"{name} >= {lo}"] * (lo is not None) + [f"{name} <= {hi}"] * (hi is not None)
    parts = sorted(str(p) for p in (review_run / "manifest").glob("*.parquet"))
    want = duckdb.sql(f"SELECT row FROM (SELECT *, row_number() OVER () - 1 AS row FROM read_parquet({parts})) "
                      f"WHERE {' AND '.join(clauses)} ORDER BY row").fetchall()
    found = call(served, "/api/browse", {"query": query, "setting": {}})[1]
    assert found["total"] == len(want) and [c["row"] for c in found["cards"]] == [r for (r,) in want][:60]


def test_labels_are_the_only_thing_written_and_reload(served, review_run):
    before = tree_hashes(review_run)
    queue = call(served, "/api/queue", {"setting": {}, "rule": "nsfw", "side": "rejected", "n": 4, "seed": 1})[1]
    for c, label in zip(queue["cards"], ("good", "bad", "skip", "bad")):
        assert call(served, "/api/label", {"row": c["row"], "sample_id": c["sample_id"], "label": label,
                                           "rule": "nsfw", "stratum": c["stratum"]})[0] == 200
    after = tree_hashes(review_run)
    assert {k: v for k, v in after.items() if k != lab.LABELS_FILE} == before
    saved = pl.read_parquet(review_run / lab.LABELS_FILE)
    assert saved.columns[:4] == ["who", "when", "sample_id", "label"] and set(saved["who"]) == {"tester"}
    listed = {r["sample_id"]: r["label"] for r in call(served, "/api/labels")[1]}
    assert all(listed[c["sample_id"]] == lab_ for c, lab_ in zip(queue["cards"], ("good", "bad", "skip", "bad")))
    wrong = call(served, "/api/label", {"row": 0, "sample_id": "000000001", "label": "bad", "rule": "", "stratum": ""})
    assert wrong[0] == 400


def test_draws_are_random_within_every_band():
    members = np.ones(10_000, bool)
    scores = np.linspace(0, 1, 10_000)
    band = lab.bands(scores, members)
    a, b = lab.draw(members, band, 40, seed=1), lab.draw(members, band, 40, seed=2)
    assert {r for r, _ in a} != {r for r, _ in b}
    assert sorted(n for _, n in a) == sorted([f"band {i}" for i in range(lab.BANDS)] * 10)
    assert [r for r, _ in a] != sorted(r for r, _ in a)[:40]  # not the first N


def test_stratified_share_and_its_interval_cover_the_truth():
    rng = np.random.default_rng(0)
    n = 200_000
    scores = rng.random(n)
    bad = rng.random(n) < np.where(scores > 0.75, 0.6, 0.1)  # truth: 0.25*0.6 + 0.75*0.1 = 0.225
    members = np.ones(n, bool)
    band = lab.bands(scores, members)
    covered = 0
    for seed in range(40):
        rows = np.array([r for r, _ in lab.draw(members, band, 120, seed)])
        est = lab.stratified(members, band, rows, bad[rows])
        covered += est.low <= bad.mean() <= est.high
    assert covered >= 34  # a 95% interval: about 38 of 40
    assert lab.wilson(0.0, 10)[0] == 0.0 and 0 < lab.wilson(0.0, 10)[1] < 0.35


def test_estimates_per_rule_from_labels(served, review_run):
    status, rows = call(served, "/api/estimates", {"setting": {}})
    assert status == 200
    nsfw = next(r for r in rows if r["rule"] == "nsfw")
    assert nsfw["precision"]["labelled"] >= 3 and 0 <= nsfw["precision"]["low"] <= nsfw["precision"]["high"] <= 1


def test_export_snippet_and_command(served, review_run):
    body = call(served, "/api/export", {"setting": {"filters.nsfw.max_prob": 0.3, "filters.clip.min_score": 0.25}})[1]
    assert body["overrides"] == ["filters.nsfw.max_prob=0.3"]  # the clip value is the run's own
    assert "nsfw:\n    max_prob: 0.3" in body["snippet"]
    assert body["command"] == f"thresher reexport {review_run} --set filters.nsfw.max_prob=0.3"


def test_counts_equal_tune_when_survivors_are_re_picked(tmp_path):
    """Each rule is its own query over the re-picked parts; their rows must line up (polars may drop the
    order of a union for a lone elementwise select, which once rejected the wrong rows here)."""
    from review_support import make_run
    from pipelines.tools.review.service import Review

    run = make_run(tmp_path / "run", pairs=True)
    review = Review(run, "tester")
    assert "dedup.phash.threshold" in {s.key for s in review.sliders}
    try:
        for setting in [{}, {"filters.nsfw.max_prob": 0.3}, {"filters.rules.min_image_side": 300},
                        {"dedup.phash.threshold": 0.95}, {"dedup.phash.threshold": 0.95, "filters.clip.min_score": 0.3}]:
            shown = review.counts(setting)
            assert shown["report"] == run_tune(run, shown["overrides"])[0].as_dict(), setting
    finally:
        review.live.close()


def _repicked(run, config) -> dict[str, str | None]:
    """sample_id -> duplicate_of as tune's re-pick (``pipelines.run.repick``) writes the manifest."""
    from dedup.plan import local_tasks
    from pipelines.run import repick

    with repick.current_manifest(run, config, local_tasks) as frame:
        rows = frame.select(col.SAMPLE_ID, col.DUPLICATE_OF).collect()
    return dict(rows.iter_rows())


def test_a_move_that_moves_a_survivor_and_a_dedup_threshold_move_equal_tune(tmp_path):
    """In-memory re-picks (``pipelines.tools.review.survivors``): a score threshold that rejects one member of a
    duplicate pair makes the other its survivor, and a dedup threshold drops the pairs below it; counts, the
    sample page's survivor and link equal tune's re-pick."""
    from review_support import make_run
    from pipelines.tools.review.service import Review

    run = make_run(tmp_path / "run", pairs=True)
    review = Review(run, "tester")
    try:
        pair = [review.rows.rows_at([r]).row(0, named=True) for r in (DUP_ROW, SURVIVOR_ROW)]
        settings = []
        for key, score, lower in [("filters.clip.min_score", col.CLIP_SCORE, True),
                                  ("filters.aesthetic.min_score", col.AESTHETIC_SCORE, True),
                                  ("filters.nsfw.max_prob", col.NSFW_PROB, False)]:
            values = [r[score] for r in pair]
            rejected = values.index(min(values) if lower else max(values))
            settings.append(({key: round(sum(values) / 2, 6)}, pair[1 - rejected][col.SAMPLE_ID]))
        survivors = {s for _, s in settings}
        assert len(survivors) == 2, settings  # the data has two settings that keep different members
        for setting, survivor in settings + [({"dedup.phash.threshold": 0.95}, None),
                                             ({"dedup.phash.threshold": 0.95, "filters.clip.min_score": 0.3}, None),
                                             ({"dedup.phash.threshold": 0.85, "filters.nsfw.max_prob": 0.2}, None)]:
            shown = review.counts(setting)
            assert shown["report"] == run_tune(run, shown["overrides"])[0].as_dict(), setting
            config = review.live.config(shown["overrides"])
            assert review.live.in_memory(config)
            want = _repicked(run, config)
            for row in (DUP_ROW, SURVIVOR_ROW, 40, 42, 44, 45, 46, 47):
                page = review.sample(row, setting)
                sample_id = page["card"]["sample_id"]
                assert page["card"]["duplicate_of"] == want[sample_id], (setting, row)
                if survivor is not None and row in (DUP_ROW, SURVIVOR_ROW):
                    assert page["card"]["duplicate_of"] == (None if sample_id == survivor else survivor)
                    if sample_id != survivor:
                        assert page["survivor"]["sample_id"] == survivor
                        assert page["link"]["detector"] == "phash" and page["link"]["similarity"] == pytest.approx(0.96)
        dropped = review.sample(44, {"dedup.phash.threshold": 0.95})  # its only pair is at 0.92
        assert dropped["card"]["duplicate_of"] is None and dropped["link"]["detector"] is None
    finally:
        review.live.close()
