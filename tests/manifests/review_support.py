"""A small finished run for the review app's tests, made without Ray: real photos in one staged tar,
a decided two-part manifest with scores, a duplicate and its survivor, a hostile caption and URL, and one
row whose staged path tries to leave the run."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from filters.decide import decide
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.schema import DupKind, Status
from pipelines.config import build_config, dump_config
from tooling_support import SCRIPT_CAPTION, run_config

ROWS = 64
HOSTILE_ROW, TRAVERSAL_ROW, DUP_ROW, SURVIVOR_ROW = 3, 5, 10, 11
HOSTILE_URL = 'javascript:alert(1)//"><img src=x onerror=window.__pwned=2>'
FILTERS = {"clip": {"enabled": True, "min_score": 0.25}, "aesthetic": {"enabled": True, "min_score": 4.5},
           "nsfw": {"enabled": True, "max_prob": 0.5}}
WORDS = ("a", "photo", "of", "red", "dog", "cat", "on", "the", "beach", "old", "car", "in", "snow")


def _photos() -> list[bytes]:
    from PIL import Image
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins"):
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        for k in range(ROWS // 6 + 1):
            crop = image.crop((k * 7, k * 5, image.width - k * 3, image.height - k * 4)).resize((192, 144))
            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=85)
            out.append(buf.getvalue())
    return out[:ROWS]


def _manifest(rng: np.random.Generator) -> pl.DataFrame:
    ids = [f"{i:09d}" for i in range(ROWS)]
    failed = np.zeros(ROWS, bool)
    failed[[7, 20, 33]] = True
    captions = [" ".join(rng.choice(WORDS, rng.integers(2, 8))) for _ in range(ROWS)]
    captions[HOSTILE_ROW] = SCRIPT_CAPTION
    urls = [f"http://example.invalid/img/{s}.jpg" for s in ids]
    urls[HOSTILE_ROW] = HOSTILE_URL
    shards = ["ingest/staged/00000.tar"] * ROWS
    shards[TRAVERSAL_ROW] = "../../../../etc/passwd"

    def score(values: np.ndarray) -> pl.Series:
        return pl.Series(values.astype(np.float32)).set(pl.Series(failed), None)

    dup = [None] * ROWS
    dup[DUP_ROW] = ids[SURVIVOR_ROW]

    def at_dup(value):
        return [value if i == DUP_ROW else None for i in range(ROWS)]

    return pl.DataFrame({
        col.SAMPLE_ID: ids, col.CAPTION: captions, col.URL: urls,
        col.STATUS: np.where(failed, Status.FAILED_TO_DOWNLOAD, Status.SUCCESS),
        col.ORIGINAL_WIDTH: pl.Series(rng.integers(150, 1200, ROWS).astype(np.int32)).set(pl.Series(failed), None),
        col.ORIGINAL_HEIGHT: pl.Series(rng.integers(150, 900, ROWS).astype(np.int32)).set(pl.Series(failed), None),
        col.SHARD: shards, col.MEMBER: [f"{s}.jpg" for s in ids],
        col.CLIP_SCORE: score(rng.normal(0.3, 0.05, ROWS)), col.AESTHETIC_SCORE: score(rng.normal(5.2, 0.8, ROWS)),
        col.NSFW_PROB: score(rng.beta(0.8, 2.0, ROWS)),
        col.CLUSTER_ID: pl.Series(at_dup(ids[SURVIVOR_ROW]), dtype=pl.String),
        col.DUPLICATE_OF: pl.Series(dup, dtype=pl.String),
        col.DUP_KIND: pl.Series(at_dup(DupKind.IMAGE), dtype=pl.String),
        col.DUP_SIMILARITY: pl.Series(at_dup(0.96), dtype=pl.Float32),
        col.DUP_DETECTOR: pl.Series(at_dup("phash"), dtype=pl.String),
    })


def make_run(root: Path, pairs: bool = False) -> Path:
    """The run; with ``pairs``, phash on and a stored one-process pairs file (survivors get re-picked)."""
    sections = {"filters": FILTERS, **({"dedup": {"phash": {"enabled": True}}} if pairs else {})}
    config = build_config(run_config(root, **sections))
    layout = RunLayout.at(root)
    layout.staged_dir.mkdir(parents=True)
    rows = decide(_manifest(np.random.default_rng(3)), config.filters).collect()
    with tarfile.open(layout.staged_tar(0), "w") as tar:
        for sample_id, photo in zip(rows[col.SAMPLE_ID], _photos()):
            info = tarfile.TarInfo(f"{sample_id}.jpg")
            info.size = len(photo)
            tar.addfile(info, io.BytesIO(photo))
    layout.manifest_dir.mkdir()
    rows.slice(0, ROWS // 2).write_parquet(layout.manifest_part("00000"))
    rows.slice(ROWS // 2).write_parquet(layout.manifest_part("00001"))
    (root / "config.yaml").write_text(dump_config(config))
    if pairs:
        layout.pairs.parent.mkdir(parents=True)
        ids = rows[col.SAMPLE_ID]
        links = [(SURVIVOR_ROW, DUP_ROW, 0.96), (20, 21, 0.9), (40, 42, 0.97), (41, 43, 0.99), (44, 45, 0.92),
                 (42, 46, 0.93), (46, 47, 0.98)]  # the last two: a four-member chain with 40 and 42
        pl.DataFrame({"sample_a": [ids[a] for a, _, _ in links], "sample_b": [ids[b] for _, b, _ in links],
                      "detector": ["phash"] * len(links), "dup_kind": [DupKind.IMAGE] * len(links),
                      "similarity": [s for _, _, s in links]},
                     schema={"sample_a": pl.String, "sample_b": pl.String, "detector": pl.String,
                             "dup_kind": pl.String, "similarity": pl.Float32}).write_parquet(layout.pairs)
    return root


@pytest.fixture(scope="session")
def review_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("review") / "run")


@pytest.fixture(scope="module")
def served(review_run):
    from pipelines.tools.review.app import start
    from pipelines.tools.review.service import Review

    handle = start(Review(review_run, "tester"))
    yield handle
    handle.close()


def call(served, path: str, body: dict | None = None, token: str | None = "ok") -> tuple[int, object]:
    """(status, JSON or bytes) of one request; ``token`` "ok": the right one, None: none."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["X-Thresher-Token"] = served.token if token == "ok" else token
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(served.base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            raw, kind, status = response.read(), response.headers.get("Content-Type", ""), response.status
    except urllib.error.HTTPError as err:
        raw, kind, status = err.read(), err.headers.get("Content-Type", ""), err.code
    return status, json.loads(raw) if "json" in kind else raw
