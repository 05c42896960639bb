"""One score phase end to end on local Ray: tiny CLIP, the aesthetic head on its embedding, open_nsfw, and the
pixel descriptors of dedup (pixel hash, pHash, a tiny SSCD) behind the one shared decode stage."""

from __future__ import annotations

import collections
import hashlib
import json
import shutil

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from filters.clip import ClipScorer
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.schema import Status
from manifests.shards import iter_tar
from pipelines.cli.corpus import build_corpus
from pipelines.cli.demo import serve_files, write_url_list
from pipelines.config import build_config
from pipelines.run.driver import prepare, run_phase
from parity import assert_same_embeddings

pytestmark = pytest.mark.slow
KINDS = ("original", "truncated", "not_image", "zero_bytes", "not_found")  # each photo once, and the faults
ROWS = 21
STAGES = ("clip", "aesthetic", "nsfw", "pixel_hash", "phash", "sscd")
SSCD = {"enabled": True, "random_init": True, "layers": [1, 1, 1, 1], "init_planes": 8, "dims": 16, "image_size": 64}


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, ray_session, decode_log, tiny_clip_768, optional_checkpoints):
    root = tmp_path_factory.mktemp("score_phase")
    files, rows = build_corpus(40, seed=1)
    rows = [r for r in rows if r.kind in KINDS]
    filters = {"clip": tiny_clip_768.model_dump(), "nsfw": {"enabled": True, "intra_op_threads": 1}}
    if optional_checkpoints is not None:
        filters |= {"cache_dir": str(optional_checkpoints), "aesthetic": {"enabled": True, "head": "v2"}}
    with serve_files(files) as base_url:
        data = {"output_dir": str(root / "run"), "filters": filters,
                "dedup": {"exact": {"enabled": True}, "phash": {"enabled": True}, "sscd": SSCD},
                "input": {"kind": "url_list", "path": str(write_url_list(rows, base_url, root / "urls.parquet")),
                          "rows_per_shard": 15},
                "crawl": {"allow_private_addresses": True, "retries": 0, "image_size": 128},
                "resources": {"ingest": {"concurrency": 2},
                              "stages": {n: {"num_cpus": 0.25, "batch_size": 16} for n in STAGES}}}
        config = build_config(data)
        run = prepare(config)
        run_phase(run, "ingest")
    for log in decode_log.glob("*.log"):  # count the score phase's decodes only
        log.unlink()
    run_phase(run, "score")
    shutil.copytree(decode_log, root / "decodes")
    run_phase(run, "decide")
    return config, RunLayout.at(root / "run")


def test_every_success_row_is_scored_and_failures_are_null(scored_run):
    config, layout = scored_run
    manifest = pl.read_parquet(layout.decided_files())
    ok = manifest.filter(pl.col(col.STATUS) == Status.SUCCESS)
    assert 0 < ok.height < ROWS == manifest.height
    columns = [col.CLIP_SCORE, col.NSFW_PROB] + ([col.AESTHETIC_SCORE] if config.filters.aesthetic.enabled else [])
    for name in columns:
        assert ok[name].null_count() == 0, name
        assert manifest.filter(pl.col(col.STATUS) != Status.SUCCESS)[name].null_count() == ROWS - ok.height
    assert col.CLIP_EMBEDDING not in manifest.columns
    assert (ok[col.NSFW_PROB] < 0.5).all()


def test_embeddings_are_kept_as_a_score_artefact(scored_run):
    _, layout = scored_run
    table = pq.read_table(layout.score_files())
    emb = np.stack(table.column(col.CLIP_EMBEDDING).to_pylist()).astype(np.float32)
    assert emb.shape[1] == 768
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=3e-3)


def test_ray_scores_equal_the_stage_called_directly(scored_run):
    config, layout = scored_run
    samples = [s for tar in layout.staged_tars() for s in iter_tar(tar)]
    image = [next(m[e] for e in ("jpg", "png", "webp") if e in m) for _, m in samples]
    batch = {col.IMAGE: np.array(image, dtype=object),
             col.CAPTION: np.array([m["txt"].decode() for _, m in samples], dtype=object)}
    direct = dict(zip([k for k, _ in samples], ClipScorer(config.filters.clip)(batch)[col.CLIP_SCORE]))
    scores = pl.read_parquet(layout.score_files()).select(col.SAMPLE_ID, col.CLIP_SCORE)
    for sample_id, value in scores.iter_rows():
        assert value == pytest.approx(direct[sample_id], abs=1e-5)


def test_run_json_records_each_stage_and_the_nsfw_backend(scored_run):
    _, layout = scored_run
    stages = json.loads(layout.run_json.read_text())["phases"]["score"]["stages"]
    assert stages["nsfw"]["class"] == "filters.nsfw.OpenNsfwScorer"
    assert stages["nsfw"]["config"]["backend"] == "open_nsfw"
    assert stages["clip"]["config"]["model"] == "thresher-tiny-768"


def test_the_score_phase_decodes_each_staged_image_once(scored_run):
    """Six stages read pixels; each staged image is decoded once, by the shared decode stage."""
    _, layout = scored_run
    decodes = collections.Counter(line for f in (layout.root.parent / "decodes").glob("*.log")
                                  for line in f.read_text().split())
    staged = [m[e] for tar in layout.staged_tars() for _, m in iter_tar(tar) for e in ("jpg", "png", "webp") if e in m]
    assert len(staged) > 5
    assert decodes == {hashlib.sha1(blob).hexdigest()[:16]: 1 for blob in staged}


def test_pixel_descriptors_are_written_for_every_scored_row(scored_run):
    _, layout = scored_run
    table = pl.read_parquet(layout.score_files())
    for name in (col.PIXEL_HASH, col.PHASH, col.SSCD_EMBEDDING):
        assert table[name].null_count() == 0, name


def test_resize_on_the_device_through_the_score_phase(scored_run, decode_log, tmp_path):
    """``decode.resize: gpu`` through the real phase: the decode tasks only decode (still once per image),
    the CLIP actor resizes, and the scores and embeddings stay within rounding of the CPU resize's."""
    config, layout = scored_run
    shutil.copytree(layout.root, tmp_path / "run", ignore=shutil.ignore_patterns("score"))  # ingested, unscored
    resized = build_config(config.model_dump(mode="json") | {"output_dir": str(tmp_path / "run"),
                                                             "decode": {"resize": "gpu"}})
    for log in decode_log.glob("*.log"):
        log.unlink()
    run_phase(prepare(resized), "score")
    decodes = collections.Counter(line for f in decode_log.glob("*.log") for line in f.read_text().split())
    assert decodes and set(decodes.values()) == {1}
    before = clip_outputs(layout.score_files())
    after = clip_outputs(RunLayout.at(tmp_path / "run").score_files())
    assert after.keys() == before.keys()
    assert [v[0] is None for v in after.values()] == [v[0] is None for v in before.values()]
    scored = [k for k, v in before.items() if v[0] is not None]
    # a wrong crop moves these scores by 1e-2 and the embeddings' cosine by 2e-2 (test_parity.py), the
    # device's rounding by 2e-5 and 4e-7
    reference, resized = (np.array([rows[k][0] for k in scored]) for rows in (before, after))
    np.testing.assert_allclose(resized, reference, atol=1e-3)
    reference, resized = (np.array([rows[k][1] for k in scored], dtype=np.float32) for rows in (before, after))
    assert_same_embeddings(resized, reference)
    assert any(after[k][0] != before[k][0] for k in scored)  # the device's resize really ran


def clip_outputs(files: list) -> dict[str, tuple[float | None, list[float]]]:
    table = pq.read_table(files, columns=[col.SAMPLE_ID, col.CLIP_SCORE, col.CLIP_EMBEDDING]).to_pydict()
    rows = zip(table[col.SAMPLE_ID], table[col.CLIP_SCORE], table[col.CLIP_EMBEDDING])
    return {sample_id: (value, embedding) for sample_id, value, embedding in sorted(rows)}
