"""Fixtures of the manifest-tool tests: a synthetic decided manifest, one real curated run, Chromium."""

from __future__ import annotations

import dataclasses
import hashlib
from functools import partial
from pathlib import Path

import polars as pl
import pytest
import yaml

from filters.config import AestheticConfig, ClipScorerConfig, FiltersConfig, NsfwConfig
from filters.decide import decide
from manifests import schema as col
from manifests.layout import RunLayout
from pipelines.config import build_config, dump_config
from support.manifest_synthetic import write_manifest

REPO = Path(__file__).resolve().parents[2]
KINDS = ("original", "too_small", "rescale", "truncated", "not_image", "zero_bytes", "not_found")
SCRIPT_CAPTION = '<script>window.__pwned = 1; console.error("pwned")</script> a cat on a "sofa" & more'


# The score sections with their thresholds on (enabled: decide needs no weights), as the tests set them.
ClipSection = partial(ClipScorerConfig, enabled=True, min_score=None)
AestheticSection = partial(AestheticConfig, enabled=True)
NsfwSection = partial(NsfwConfig, enabled=True, max_prob=None)
ScoreFilters = FiltersConfig


def run_config(root: Path, **sections) -> dict:
    return {"output_dir": str(root), "input": {"kind": "url_list", "path": str(root / "urls.parquet")}, **sections}


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> hex), to prove a tree was not touched."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    """A run directory holding only a decided 20,000-row synthetic manifest (with score columns), as three part
    files in manifest/ like a run's, and its config."""
    root = tmp_path_factory.mktemp("synthetic") / "run"
    config = build_config(run_config(root))
    whole = root / "whole.parquet"
    write_manifest(whole, 20_000, partial(decide, config=config.filters), seed=1, chunk_rows=7_000)
    rows = pl.read_parquet(whole)
    for part, start in enumerate(range(0, rows.height, 7_000)):
        layout = RunLayout.at(root)
        layout.manifest_dir.mkdir(exist_ok=True)
        rows.slice(start, 7_000).write_parquet(layout.manifest_part(f"{part:05d}"))
    whole.unlink()
    (root / "config.yaml").write_text(dump_config(config))
    return root


BLOCKED_KIND, OPTED_OUT_KIND, GENERATED_KIND = "blocked", "opted_out", "generated"
GENERATED_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                 b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
                 b'xmlns:cc="http://creativecommons.org/ns#" Iptc4xmpExt:DigitalSourceType='
                 b'"http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia">'
                 b'<cc:license rdf:resource="https://creativecommons.org/publicdomain/zero/1.0/"/>'
                 b'</rdf:Description></rdf:RDF></x:xmpmeta>')


def compliance_rows(files: dict[str, bytes], out: Path) -> list:
    """Rows that exercise compliance in the real run: a listed file, a robots.txt opt-out, an AI-declared image.

    Adds the files they need to ``files`` (robots.txt included) and writes the blocklist to out/known.txt.
    """
    import io

    from PIL import Image

    from pipelines.cli.corpus import Sample, jpeg

    originals = sorted(p for p in files if p.startswith("/img/") and p.count("-") == 0 and p.endswith(".jpg"))
    files["/optout/photo.jpg"] = files[originals[1]]
    files["/robots.txt"] = b"User-agent: GPTBot\nDisallow: /optout/\n"
    mirrored = Image.open(io.BytesIO(files[originals[2]])).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    files["/blocked/photo.jpg"] = jpeg(mirrored)  # an image of its own: nothing else in the run shares its pixels
    (out / "known.txt").write_text(hashlib.sha256(files["/blocked/photo.jpg"]).hexdigest() + "\n")
    (out / "blocked.jpg").write_bytes(files["/blocked/photo.jpg"])  # beside the run, for the test that greps it
    buf = io.BytesIO()
    Image.radial_gradient("L").resize((320, 256)).convert("RGB").save(buf, "JPEG", xmp=GENERATED_XMP)
    files["/img/generated.jpg"] = buf.getvalue()
    return [Sample("/blocked/photo.jpg", "a photo on a known-hash list", BLOCKED_KIND),
            Sample("/optout/photo.jpg", "a photo its site reserves from AI crawlers", OPTED_OUT_KIND),
            Sample("/img/generated.jpg", "an image declared as made by a generative model", GENERATED_KIND)]


@pytest.fixture(scope="session")
def real_run(tmp_path_factory, ray_session) -> Path:
    """A real curation of the demo corpus (loopback server, every phase on Ray), one row's caption hostile."""
    from pipelines.cli.corpus import build_corpus
    from pipelines.cli.demo import demo_config, serve_files, write_url_list
    from pipelines.run.driver import run

    out = tmp_path_factory.mktemp("real")
    files, rows = build_corpus(0)
    rows = [r for r in rows if r.kind in KINDS]  # the near-duplicate variants add time, not coverage, here
    rows[0] = dataclasses.replace(rows[0], caption=SCRIPT_CAPTION)
    rows += compliance_rows(files, out)
    with serve_files(files) as base_url:
        url_list = write_url_list(rows, base_url, out / "urls.parquet")
        data = demo_config(url_list, out / "run")
        data["crawl"]["blocklists"] = [{"path": str(out / "known.txt"), "name": "known"}]
        (out / "config.yaml").write_text(yaml.safe_dump(data))
        run(build_config(data))
    return out / "run"


@pytest.fixture(scope="session")
def chromium() -> str:
    from chromium_cdp import install_chromium
    binary = install_chromium()
    if binary is None:
        pytest.skip("Debian's chromium is not installed and `apt-get install -y chromium` failed here "
                    "(needs root and a reachable package mirror)")
    return binary
