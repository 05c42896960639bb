"""Hugging Face ``datasets`` loads any run's shards, streaming or not, one run or two together: real photos,
some carrying EXIF, XMP or IPTC credits and some nothing, the first shard's samples none of it. Every
sample's JSON has the same keys with one type each, and the error column is img2dataset's ``error_message``
there and in the per-shard Parquet. No Ray: ingest, then export, as the phases' tasks run them."""

from __future__ import annotations

import io
import json
import struct
from collections import defaultdict
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from PIL import Image

from crawl.config import CrawlConfig, InputConfig
from crawl.ingest import ingest_unit
from crawl.sources import plan_units
from manifests import schema as col
from manifests.export import ERROR_MESSAGE, ExportConfig, shard_sizes
from manifests.export_parts import export_shard
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.shardplan import plan_sizes
from manifests.shards import iter_tar
from pipelines.cli.corpus import load_photos

SAMPLES, SHARD_SIZE = 12, 6
XMP = b"""<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:cc="http://creativecommons.org/ns#">
 <dc:rights><rdf:Alt><rdf:li xml:lang="x-default">(c) 2026 Jane Doe</rdf:li></rdf:Alt></dc:rights>
 <dc:creator><rdf:Seq><rdf:li>Jane Doe</rdf:li></rdf:Seq></dc:creator>
 <cc:license rdf:resource="https://creativecommons.org/licenses/by/4.0/"/>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"""


def _jpeg(img: Image.Image, kind: str) -> bytes:
    buf = io.BytesIO()
    if kind == "exif":
        exif = Image.Exif()
        exif[0x013B], exif[0x8298] = "EXIF Artist", "EXIF Copyright Holder"  # Artist, Copyright
        img.save(buf, "JPEG", quality=90, exif=exif)
    else:
        img.save(buf, "JPEG", quality=90, **({"xmp": XMP} if kind == "xmp" else {}))
    data = buf.getvalue()
    if kind == "iptc":  # IPTC IIM By-line and Copyright Notice in a Photoshop APP13 segment
        iim = b"".join(b"\x1c" + bytes(k) + struct.pack(">H", len(v)) + v
                       for k, v in {(2, 80): b"IPTC By-line", (2, 116): b"IPTC Notice"}.items())
        irb = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00" + struct.pack(">I", len(iim)) + iim + b"\x00" * (len(iim) % 2)
        data = data[:2] + struct.pack(">BBH", 0xFF, 0xED, len(irb) + 2) + irb + data[2:]
    return data


def _run(root: Path, kinds: list[str]) -> list[str]:
    """Ingest a folder of real photos (sample i carries ``kinds[i]`` metadata), keep every row, export shards
    of SHARD_SIZE; returns the shard paths."""
    photos = sorted(load_photos().values(), key=lambda p: p[1])
    folder = root / "photos"
    folder.mkdir(parents=True)
    for i, kind in enumerate(kinds):
        img, caption = photos[i % len(photos)]
        (folder / f"{i:03d}.jpg").write_bytes(_jpeg(img.resize((96 + i, 96)), kind))
        (folder / f"{i:03d}.txt").write_text(caption)
    layout = RunLayout.at(root / "run")
    (unit,) = plan_units(InputConfig(kind="folder", path=str(folder), rows_per_shard=100), layout.units_dir)
    ingest_unit(unit, CrawlConfig(image_size=64, min_image_size=8), layout)
    staged = pl.read_parquet(layout.staged_rows(0))
    assert staged[col.STATUS].to_list() == [col.Status.SUCCESS] * len(kinds)
    decided = staged.with_columns(pl.lit(True).alias(col.KEEP),
                                  pl.lit([], dtype=pl.List(pl.String)).alias(col.REJECT_REASONS))
    write_parquet(decided.to_arrow(), layout.decided_part("00000"))
    plan = plan_sizes({"00000": len(kinds)}, shard_sizes(len(kinds), SHARD_SIZE))
    out = layout.root / "shards"
    for index, ranges in enumerate(plan):
        export_shard(str(layout.root), str(layout.root), index, ranges, pl.Schema(), str(out), ExportConfig())
    return [str(p) for p in sorted(out.glob("*.tar"))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[list[str], list[str]]:
    root = tmp_path_factory.mktemp("hf")
    late = ["none"] * SHARD_SIZE + ["exif", "none", "xmp", "iptc", "none", "exif"]  # shard 1 has no metadata
    early = ["xmp", "exif", "none", "iptc"] + ["none"] * (SAMPLES - 4)
    return _run(root / "late", late), _run(root / "early", early)


def _load(urls: list[str], tmp_path: Path, streaming: bool) -> list[dict]:
    import datasets

    datasets.disable_progress_bars()
    ds = datasets.load_dataset("webdataset", data_files={"train": urls}, split="train", streaming=streaming,
                               cache_dir=str(tmp_path / "hf"))
    return [{"key": row["__key__"], **row["json"]} for row in ds]


@pytest.mark.parametrize("streaming", [False, True])
def test_datasets_loads_a_run_whose_metadata_starts_after_the_first_shard(runs, tmp_path, monkeypatch, streaming):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    late, early = runs
    rows = _load(late, tmp_path, streaming)
    assert len(rows) == SAMPLES
    credits = [(r[col.ATTRIBUTION], r[col.COPYRIGHT], r[col.LICENSE]) for r in rows]
    assert credits[:SHARD_SIZE] == [("", "", "")] * SHARD_SIZE
    assert credits[SHARD_SIZE:] == [("EXIF Artist", "EXIF Copyright Holder", ""), ("", "", ""),
                                    ("Jane Doe", "(c) 2026 Jane Doe", "https://creativecommons.org/licenses/by/4.0/"),
                                    ("IPTC By-line", "IPTC Notice", ""), ("", "", ""),
                                    ("EXIF Artist", "EXIF Copyright Holder", "")]
    together = _load(late + early, tmp_path / "both", streaming)  # two runs, one dataset
    assert len(together) == 2 * SAMPLES and together[SAMPLES][col.ATTRIBUTION] == "Jane Doe"


def test_every_sample_json_has_the_same_keys_with_one_type_each(runs):
    types: dict[str, set[str]] = defaultdict(set)
    keys = set()
    for tar in runs[0] + runs[1]:
        for _, members in iter_tar(tar):
            meta = json.loads(members["json"])
            keys.add(frozenset(meta))
            for name, value in meta.items():
                types[name].add(type(value).__name__)
    assert len(keys) == 1
    (names,) = keys
    assert set(col.MANIFEST_SCHEMA.names) <= names | {col.ERROR} and "key" in names
    assert {n: t for n, t in types.items() if len(t - {"NoneType"}) > 1} == {}
    text = [f.name for f in col.MANIFEST_SCHEMA if str(f.type) == "string" and f.name != col.ERROR]
    assert all(types[n] == {"str"} for n in text), {n: types[n] for n in text if types[n] != {"str"}}


def test_the_error_column_is_named_as_img2dataset_names_it(runs):
    for tar in runs[0]:
        table = pq.read_table(Path(tar).with_suffix(".parquet"))
        assert ERROR_MESSAGE in table.column_names and col.ERROR not in table.column_names
        assert table.schema.field(col.ATTRIBUTION).type == "string"  # the contract's type, not null
        meta = json.loads(next(iter_tar(tar))[1]["json"])
        assert meta[ERROR_MESSAGE] == "" and col.ERROR not in meta
