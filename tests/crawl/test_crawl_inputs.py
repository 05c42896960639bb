"""Inputs a new user brings: .txt lists, bad JSON lines, extra columns, odd folders, img2dataset shards,
and the one-line errors for inputs that cannot run (no Ray here: these are the planner and the stages)."""

from __future__ import annotations

import io
import json
import logging
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from crawl.config import CrawlConfig, InputConfig
from crawl.image import stage_image
from crawl.img2dataset import shard_rows
from crawl.ingest import ingest_unit
from crawl.inputcheck import check_input
from crawl.readers import INPUT_ERROR, InputError, _jsonl_tables, read_batches
from crawl.sources import plan_units
from manifests import schema as col
from manifests.layout import RunLayout
from manifests.shards import write_tar


def _units(config: InputConfig, tmp_path) -> list[dict]:
    return pa.concat_tables([pq.read_table(u.path) for u in plan_units(config, tmp_path / "units")]).to_pylist()


def _jpeg(size: tuple[int, int], quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 60)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_txt_list_is_one_url_per_line_with_its_line_number(tmp_path):
    (tmp_path / "urls.txt").write_text("http://a.invalid/1.jpg\n\n  http://a.invalid/2.jpg  \nhttp://a.invalid/3.jpg")
    rows = _units(InputConfig(path=str(tmp_path / "urls.txt"), rows_per_shard=2), tmp_path)
    assert [r[col.URL] for r in rows] == [f"http://a.invalid/{i}.jpg" for i in (1, 2, 3)]
    assert [r[col.SOURCE_ROW] for r in rows] == [0, 2, 3]
    assert all(r[col.CAPTION] is None for r in rows)  # no caption source: caption rules skip these rows


def test_a_malformed_json_line_is_a_row_with_its_real_line_number(tmp_path):
    lines = [json.dumps({"url": f"http://a.invalid/{i}.jpg", "caption": f"cap {i}", "license": i}) for i in range(6)]
    lines[4] = '{"url": "http://a.invalid/4.jpg", "caption": '  # cut off
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    rows = _units(InputConfig(path=str(tmp_path / "in.jsonl"), extra_cols=["license"]), tmp_path)
    assert [r[col.SOURCE_ROW] for r in rows] == list(range(6))
    bad = rows[4]
    assert bad[INPUT_ERROR].startswith("in.jsonl line 5:") and bad[col.URL] is None
    assert [r["license"] for r in rows if r is not bad] == ["0", "1", "2", "3", "5"]  # JSON values carried as text


def test_jsonl_line_numbers_are_counted_across_blocks(tmp_path):
    lines = [json.dumps({"url": f"u{i}"}) for i in range(50)]
    lines[37] = "not json"
    lines[20] = ""
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    rows = pa.concat_tables(_jsonl_tables(tmp_path / "in.jsonl", ["url"], block_bytes=64)).to_pylist()
    assert [r[col.SOURCE_ROW] for r in rows] == [i for i in range(50) if i != 20]
    assert [r[col.SOURCE_ROW] for r in rows if r[INPUT_ERROR]] == [37]
    assert "line 38" in next(r[INPUT_ERROR] for r in rows if r[INPUT_ERROR])


def test_a_csv_row_with_the_wrong_field_count_is_an_invalid_row_not_an_abort(tmp_path):
    """Deep in the file (past the first block the input check reads): the run goes on, the row is kept."""
    rows = [f"http://x.invalid/{i}.jpg,caption {i}" for i in range(30_000)]
    rows[25_000] = "http://x.invalid/bad.jpg,a caption,an extra field"
    (tmp_path / "in.csv").write_text("url,caption\n" + "\n".join(rows) + "\n")
    check_input(InputConfig(path=str(tmp_path / "in.csv")))
    got = pa.concat_tables(read_batches(tmp_path / "in.csv", "csv", ["url", "caption"])).to_pylist()
    assert len(got) == 30_000 and sorted(r[col.SOURCE_ROW] for r in got) == list(range(30_000))
    bad = [r for r in got if r[INPUT_ERROR]]
    assert len(bad) == 1 and "in.csv line 25002: 3 fields where the header has 2" in bad[0][INPUT_ERROR]
    assert bad[0]["url"] is None


def test_extra_columns_are_carried_from_parquet_and_csv(tmp_path):
    pq.write_table(pa.table({"url": ["u0", "u1"], "caption": ["a b c", None], "license": [3, 4]}), tmp_path / "in.parquet")
    rows = _units(InputConfig(path=str(tmp_path / "in.parquet"), extra_cols=["license"]), tmp_path)
    assert [r["license"] for r in rows] == [3, 4]  # a Parquet column keeps its type
    assert [r[col.CAPTION] for r in rows] == ["a b c", ""]  # an empty cell of a caption column is an empty caption
    (tmp_path / "in.csv").write_text("url,caption,license\nu0,hi there,cc-by\n")
    rows = _units(InputConfig(path=str(tmp_path / "in.csv"), extra_cols=["license"]), tmp_path / "csv")
    assert rows[0]["license"] == "cc-by"


def test_invalid_rows_reach_the_staged_rows_with_their_status(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"url": "file:///nonexistent/x.jpg", "caption": "a cat"}\n{oops\n')
    unit = plan_units(InputConfig(kind="url_list", path=str(tmp_path / "in.jsonl")), tmp_path / "units")[0]
    layout = RunLayout.at(tmp_path / "run")
    ingest_unit(unit.__class__(unit.index, "folder", unit.path), CrawlConfig(), layout)  # file URLs: no network
    rows = pq.read_table(layout.staged_rows(0)).to_pylist()
    assert [r[col.STATUS] for r in rows] == [col.Status.FAILED_TO_DOWNLOAD, col.Status.INVALID_INPUT_ROW]
    assert rows[1][col.SOURCE_ROW] == 1 and "line 2" in rows[1][col.ERROR]


def test_folder_input_sniffs_bytes_and_counts_what_it_skips(tmp_path, caplog):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "no_suffix").write_bytes(_jpeg((8, 8)))
    (tmp_path / "imgs" / "photo.JPG").write_bytes(_jpeg((8, 8)))
    (tmp_path / "imgs" / "photo.txt").write_text("sidecar caption")
    (tmp_path / "imgs" / "readme.md").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        rows = _units(InputConfig(kind="folder", path=str(tmp_path / "imgs")), tmp_path)
    assert sorted(r[col.URL].rsplit("/", 1)[1] for r in rows) == ["no_suffix", "photo.JPG"]
    assert "skipped 1 file(s) that are not images (e.g. readme.md)" in caplog.text


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b""), r"is empty \(0 bytes\)"),
    (lambda p: p.write_text("url,caption\n"), r"has no rows \(a header only\)"),
    (lambda p: p.write_text("link,caption\nhttp://x.invalid/a.jpg,hi\n"), "input.url_col: "),
    (lambda p: p.write_text('url,caption\n"unterminated,x\n'), "line 2: a quote opened in this row is never closed"),
])
def test_bad_csv_inputs_fail_with_one_line(tmp_path, setup, message):
    path = tmp_path / "in.csv"
    setup(path)
    with pytest.raises(InputError, match=message) as info:
        check_input(InputConfig(path=str(path)))
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_other_bad_inputs_fail_with_one_line(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really a parquet file")
    (tmp_path / "blank.txt").write_text("\n  \n")
    (tmp_path / "notjson.jsonl").write_text("url,caption\n")
    (tmp_path / "nocol.jsonl").write_text('{"link": "x"}\n')
    (tmp_path / "wds").mkdir()
    cases = [
        (InputConfig(path=str(tmp_path / "bad.parquet")), "is not a readable Parquet file"),
        (InputConfig(path=str(tmp_path / "blank.txt")), "has no rows"),
        (InputConfig(path=str(tmp_path / "notjson.jsonl")), "is not JSON lines .*line 1"),
        (InputConfig(path=str(tmp_path / "nocol.jsonl"), caption_col=None), "input.url_col: .* no column 'url'"),
        (InputConfig(kind="webdataset", path=str(tmp_path / "wds")), "holds no .tar shards"),
        (InputConfig(kind="folder", path=str(tmp_path / "wds")), "not a folder with files"),
        (InputConfig(path=str(tmp_path / "nocol.jsonl"), caption_col=None, extra_cols=["license"]),
         "input.url_col"),
    ]
    for config, message in cases:
        with pytest.raises(InputError, match=message):
            check_input(config)
    if os.geteuid() != 0:  # root reads anything
        (tmp_path / "locked.csv").write_text("url\nx\n")
        (tmp_path / "locked.csv").chmod(0)
        with pytest.raises(InputError, match="not readable"):
            check_input(InputConfig(path=str(tmp_path / "locked.csv")))


def test_an_image_already_at_target_size_is_staged_as_it_is():
    config = CrawlConfig(image_size=64, resize_mode="border")
    exact = _jpeg((64, 64), quality=70)
    staged = stage_image(exact, config)
    assert staged.data == exact and (staged.width, staged.height) == (64, 64)
    bigger = stage_image(_jpeg((80, 64)), config)
    assert bigger.data != _jpeg((80, 64)) and (bigger.width, bigger.height) == (64, 64)
    as_png = stage_image(exact, CrawlConfig(image_size=64, resize_mode="border", encode_format="png"))
    assert as_png.data[:4] == b"\x89PNG"


def test_img2dataset_shard_rows_carry_failures_sizes_and_extras(tmp_path):
    image = _jpeg((64, 64))
    meta = {"key": "000000001", "url": "http://a.invalid/1.jpg", "caption": "a red square", "status": "success",
            "original_width": 640, "original_height": 480, "sha256": "ab" * 32, "exif": '{"Image Make": "X"}',
            "license": "cc0"}
    write_tar(tmp_path / "00000.tar", [("000000001", {"jpg": image, "txt": b"a red square",
                                                      "json": json.dumps(meta).encode()})])
    failed = {"key": "000000000", "url": "http://a.invalid/0.jpg", "caption": "gone", "status": "failed_to_download",
              "error_message": "HTTP Error 404: Not Found", "license": "cc-by"}
    pq.write_table(pa.Table.from_pylist([failed, meta]), tmp_path / "00000.parquet")
    rows = list(shard_rows(tmp_path / "00000.tar", ("license",)))
    assert [(r[col.SAMPLE_ID], f.status) for r, f, _ in rows] == [
        ("000000000", col.Status.FAILED_TO_DOWNLOAD), ("000000001", col.Status.SUCCESS)]
    assert rows[0][1].http_status == 404 and rows[0][0]["license"] == "cc-by"
    assert rows[1][2] == {col.ORIGINAL_WIDTH: 640, col.ORIGINAL_HEIGHT: 480, col.SHA256: "ab" * 32,
                          col.EXIF: '{"Image Make": "X"}'}
    assert rows[1][1].data == image and [r[col.SOURCE_ROW] for r, _, _ in rows] == [0, 1]
