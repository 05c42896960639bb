"""Known-hash blocking: every listed file is blocked before decode, its bytes reach no file of the run,
and list files are checked (file and line named) before any work starts."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pdqhash
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from crawl_support import fast_config
from hypothesis import given, settings
from hypothesis import strategies as st
from faultserver import bomb_png
from PIL import Image, ImageEnhance
from siteserver import Site, SiteSpec

from crawl.blocklist import BlocklistError, load_blocklists, pdq_hex
from crawl.config import BlocklistConfig, InputConfig
from crawl.image import stage_image
from crawl.ingest import ingest_unit
from crawl.sources import plan_units
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.schema import Status
from pipelines.cli.corpus import jpeg, load_photos

REPO = Path(__file__).resolve().parents[2]


def edited(data: bytes) -> bytes:
    """A near-copy: scaled down, brightened and re-encoded at a lower quality."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = ImageEnhance.Brightness(img.resize((img.width * 3 // 4, img.height * 3 // 4))).enhance(1.1)
    return jpeg(img, quality=70)


def pdq_code(data: bytes) -> str:
    """As ThreatExchange's reference hasher does it: at most 512x512, then PDQ."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((512, 512))
    bits, _ = pdqhash.compute(np.asarray(img))
    return pdq_hex(bits)


def photo_paths(served: dict[str, bytes]) -> list[str]:
    return sorted(p for p in served if p.endswith(".jpg"))


@pytest.fixture(scope="module")
def served() -> dict[str, bytes]:
    photos = sorted(load_photos().items())  # at least eight, or load_photos raises
    files = {f"/img/{name}.jpg": jpeg(img) for name, (img, _) in photos[:6]}
    files["/img/bomb.png"] = bomb_png()  # listed by digest: must be blocked without a decode
    return files


@pytest.fixture(scope="module")
def blocked_run(served: dict[str, bytes], tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("blocklist")
    paths = photo_paths(served)
    listed = {paths[0]: "md5", paths[1]: "sha256", paths[2]: "sha1", paths[3]: "pdq", "/img/bomb.png": "sha256"}
    digests = tmp / "known.txt"
    digests.write_text("# generated for the test\n\n" + "".join(
        f"{hashlib.new(kind, served[p]).hexdigest()}\n" for p, kind in listed.items() if kind != "pdq"))
    pdq_list = tmp / "pdq.csv"
    pdq_list.write_text(f"{pdq_code(edited(served[paths[3]]))},100\n")
    config = fast_config(blocklists=[{"path": str(digests)}, {"path": str(pdq_list), "kind": "pdq", "name": "near"}])
    with Site(SiteSpec(images=served)) as site:
        urls = [site.url(p) for p in sorted(served)]
        pq.write_table(pa.table({"url": urls, "caption": [f"photo {p}" for p in sorted(served)]}), tmp / "in.parquet")
        [unit] = plan_units(InputConfig(path=str(tmp / "in.parquet")), tmp / "run" / "ingest" / "units")
        layout = RunLayout.at(str(tmp / "run"))
        ingest_unit(unit, config, layout)
    rows = {Path(r[col.URL]).name: r for r in pq.read_table(layout.staged_rows(0)).to_pylist()}
    blocked = {Path(p).name: served[p] for p in listed}
    return {"rows": rows, "blocked": blocked, "listed": listed, "root": tmp / "run", "config": config}


def test_every_listed_image_is_blocked(blocked_run: dict) -> None:
    rows = blocked_run["rows"]
    for name in blocked_run["blocked"]:
        assert rows[name][col.STATUS] == Status.BLOCKED_HASH_MATCH, (name, rows[name][col.ERROR])
    assert sum(r[col.STATUS] == Status.SUCCESS for r in rows.values()) == len(rows) - len(blocked_run["blocked"])


def test_the_digest_and_list_are_recorded(blocked_run: dict) -> None:
    for path, kind in blocked_run["listed"].items():
        row = blocked_run["rows"][Path(path).name]
        assert row[col.BLOCKLIST] == ("near" if kind == "pdq" else "known")
        assert row[col.BLOCKLIST_DIGEST].split(":")[0] == kind
        if kind != "pdq":
            assert row[col.BLOCKLIST_DIGEST] == f"{kind}:{hashlib.new(kind, blocked_run['blocked'][Path(path).name]).hexdigest()}"
        assert row[col.SHARD] is None and row[col.MEMBER] is None and row[col.WIDTH] is None


def test_a_digest_match_is_decided_before_any_decode(blocked_run: dict) -> None:
    """The bomb would be ``decompression_bomb`` if it had been opened at all."""
    assert blocked_run["rows"]["bomb.png"][col.STATUS] == Status.BLOCKED_HASH_MATCH
    assert blocked_run["rows"]["bomb.png"][col.ORIGINAL_WIDTH] is None


def test_blocked_bytes_are_written_nowhere(blocked_run: dict) -> None:
    """Neither the original bytes nor what staging would have made of them appear in any file of the run."""
    needles = []
    for data in blocked_run["blocked"].values():
        needles.append(data)
        staged = stage_image(data, blocked_run["config"]).data
        if staged is not None:
            needles.append(staged)
    files = [p for p in blocked_run["root"].rglob("*") if p.is_file()]
    assert any(p.suffix == ".tar" for p in files)
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle[:4096] not in content, path


def logged_forms(data: bytes) -> list[bytes]:
    """Stretches of ``data`` that no other image shares (a JPEG's from its scan data on, past the tables every
    PIL JPEG repeats), from its start, middle and end, as a log would carry them: raw, as Python's repr, as
    hex and as base64 (offsets a multiple of 3, so each is a substring of the whole's encoding)."""
    scan = data.find(b"\xff\xda")
    first = scan + 16 if scan > 0 else 40
    forms = []
    for offset in (first, (first + len(data)) // 2, len(data) - 80):
        chunk = data[offset // 3 * 3:][:63]
        forms += [chunk, repr(chunk)[2:-1].encode(), chunk.hex().encode(), base64.b64encode(chunk)]
    return forms


@pytest.mark.slow
def test_blocked_bytes_are_never_logged(served: dict[str, bytes], blocked_run: dict, tmp_path: Path) -> None:
    """``thresher ingest`` as a user runs it (its own local Ray, bound to loopback): neither the run's log,
    RUN/logs/thresher.log, nor any log of that Ray session holds the blocked bytes or what staging makes."""
    ray_dir = Path(tempfile.mkdtemp(prefix="tr", dir="/tmp"))  # short: Ray's socket paths live under it
    try:
        with Site(SiteSpec(images=served)) as site:
            urls = [site.url(p) for p in sorted(served)]
            pq.write_table(pa.table({"url": urls, "caption": ["photo"] * len(urls)}), tmp_path / "in.parquet")
            config = {"output_dir": str(tmp_path / "run"), "input": {"path": str(tmp_path / "in.parquet")},
                      "crawl": blocked_run["config"].model_dump(mode="json"), "ray": {"num_cpus": 2}}
            (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
            done = subprocess.run([sys.executable, "-m", "pipelines", "ingest", str(tmp_path / "config.yaml")],
                                  cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": str(ray_dir)},
                                  capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        rows = pq.read_table(RunLayout.at(tmp_path / "run").staged_rows(0)).column(col.STATUS).to_pylist()
        assert rows.count(Status.BLOCKED_HASH_MATCH) == len(blocked_run["blocked"])
        log = tmp_path / "run" / "logs" / "thresher.log"
        session = [p for p in ray_dir.rglob("*") if p.is_file() and "logs" in p.parts]
        assert log.is_file() and any(p.name.startswith("worker-") for p in session)  # the logs were written
        needles = [form for data in blocked_run["blocked"].values() for form in logged_forms(data)]
        for data in blocked_run["blocked"].values():
            staged = stage_image(data, blocked_run["config"]).data
            needles += logged_forms(staged) if staged else []
        for path in [log, *session]:
            content = path.read_bytes()
            assert not any(needle in content for needle in needles), path
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)


def test_an_unrelated_image_is_not_a_pdq_match(served: dict[str, bytes]) -> None:
    pdq_codes = [pdq_code(served[p]) for p in photo_paths(served)]
    for i, a in enumerate(pdq_codes):
        for b in pdq_codes[i + 1:]:
            distance = bin(int(a, 16) ^ int(b, 16)).count("1")
            assert distance > 31, distance  # the default radius would not confuse these photos


@pytest.mark.parametrize("content,kind,line", [
    ("d41d8cd98f00b204e9800998ecf8427e\nnot-a-hash\n", "digest", 2),
    ("# header\n" + "ab" * 20 + "\n" + "0" * 31 + "\n", "digest", 3),
    ("a" * 64 + "\n" + "d41d8cd98f00b204e9800998ecf8427e\n", "pdq", 2),
])
def test_a_bad_line_is_named(tmp_path: Path, content: str, kind: str, line: int) -> None:
    path = tmp_path / "list.txt"
    path.write_text(content)
    with pytest.raises(BlocklistError, match=f"{path}:{line}:"):
        load_blocklists((BlocklistConfig(path=str(path), kind=kind),))


def test_a_missing_file_fails_config_validation_before_work(tmp_path: Path) -> None:
    from pipelines.config import ConfigError, build_config
    from pipelines.run.driver import validate

    config = build_config({"output_dir": str(tmp_path / "run"), "input": {"path": str(tmp_path / "in.parquet")},
                           "crawl": {"blocklists": [{"path": str(tmp_path / "absent.txt")}]}})
    with pytest.raises(ConfigError, match="absent.txt"):
        validate(config)
    assert not (tmp_path / "run").exists()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8, unique=True), st.data())
def test_a_digest_list_matches_exactly_its_members(tmp_path_factory, blobs: list[bytes], data) -> None:
    """Whatever the algorithm each entry is listed under, listed bytes match and others do not."""
    algos = [data.draw(st.sampled_from(["md5", "sha1", "sha256"])) for _ in blobs]
    listed = blobs[: max(1, len(blobs) // 2)]
    path = tmp_path_factory.mktemp("prop") / "list.txt"
    path.write_text("".join(f"{hashlib.new(a, b).hexdigest().upper()}, extra field\n" for a, b in zip(algos, listed)))
    lists = load_blocklists((BlocklistConfig(path=str(path)),))
    for i, blob in enumerate(blobs):
        found = lists.match(blob, 1 << 20)
        if blob in listed:
            assert found is not None and found.digest == f"{algos[i]}:{hashlib.new(algos[i], blob).hexdigest()}"
        else:
            assert found is None


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=20), st.binary(min_size=32, max_size=32))
def test_hamming_equals_a_bit_count(listed: list[bytes], probe: bytes) -> None:
    from crawl.blocklist import hamming

    columns = np.ascontiguousarray(np.stack([np.frombuffer(h, dtype=">u8").astype(np.uint64) for h in listed]).T)
    words = np.frombuffer(probe, dtype=">u8").astype(np.uint64)
    expected = [bin(int.from_bytes(h, "big") ^ int.from_bytes(probe, "big")).count("1") for h in listed]
    assert hamming(columns, words).tolist() == expected
