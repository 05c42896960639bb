"""Input planning: img2dataset-compatible keys, bounded chunks, all three formats, clear errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawl.config import InputConfig
from crawl.readers import InputError
from crawl.sources import plan_units, sample_key
from manifests import schema as col


def test_keys_match_img2dataset_layout():
    # img2dataset: shard id padded to 5 digits + row padded to ceil(log10(number_sample_per_shard)) digits.
    assert sample_key(0, 0, 10_000) == "000000000"
    assert sample_key(12, 345, 10_000) == "000120345"
    assert sample_key(3, 7, 100) == "0000307"


def _write_inputs(tmp_path, n):
    urls = [f"http://example.invalid/{i}.jpg" for i in range(n)]
    caps = [f"caption, number {i}" for i in range(n)]
    pq.write_table(pa.table({"URL": urls, "TEXT": caps}), tmp_path / "in.parquet")
    (tmp_path / "in.csv").write_text("URL,TEXT\n" + "".join(f'{u},"{c}"\n' for u, c in zip(urls, caps)))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"URL": u, "TEXT": c}) + "\n" for u, c in zip(urls, caps)))
    return urls, caps


@pytest.mark.parametrize("name", ["in.parquet", "in.csv", "in.jsonl"])
def test_every_row_lands_in_exactly_one_unit_in_order(tmp_path, name):
    urls, caps = _write_inputs(tmp_path, 25)
    config = InputConfig(path=str(tmp_path / name), url_col="URL", caption_col="TEXT", rows_per_shard=10)
    units = plan_units(config, tmp_path / "units")
    assert [u.index for u in units] == [0, 1, 2]
    table = pa.concat_tables([pq.read_table(u.path) for u in units])
    assert table.column(col.URL).to_pylist() == urls
    assert table.column(col.CAPTION).to_pylist() == caps
    assert table.column(col.SOURCE_ROW).to_pylist() == list(range(25))
    assert table.column(col.SAMPLE_ID).to_pylist()[10] == "000010"  # unit 1, row 0; 1 digit for 10 rows


def test_missing_column_is_named_with_the_fix(tmp_path):
    _write_inputs(tmp_path, 3)
    config = InputConfig(path=str(tmp_path / "in.parquet"), url_col="url", rows_per_shard=10)
    with pytest.raises(ValueError, match="input.url_col"):
        plan_units(config, tmp_path / "units")


def test_missing_input_and_unknown_format(tmp_path):
    # InputError (a ValueError) since issue 17: the CLI prints it as one line and exits 2.
    with pytest.raises(InputError, match="input.path"):
        plan_units(InputConfig(path=str(tmp_path / "nope.parquet")), tmp_path / "units")
    (tmp_path / "urls.lst").write_text("x")
    with pytest.raises(ValueError, match="input.format"):
        plan_units(InputConfig(path=str(tmp_path / "urls.lst")), tmp_path / "units")


def test_folder_units_take_sidecar_captions(tmp_path):
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for name in ["b.jpg", "a.png", "sub/c.webp"]:
        (tmp_path / "imgs" / name).write_bytes(b"x")
    (tmp_path / "imgs" / "a.txt").write_text("a caption\n")
    (tmp_path / "imgs" / "notes.md").write_text("ignored: neither an image nor a sidecar")
    units = plan_units(InputConfig(kind="folder", path=str(tmp_path / "imgs"), rows_per_shard=2), tmp_path / "u")
    rows = pa.concat_tables([pq.read_table(u.path) for u in units]).to_pylist()
    assert [r[col.URL].rsplit("/", 1)[1] for r in rows] == ["a.png", "b.jpg", "c.webp"]
    assert [r[col.CAPTION] for r in rows] == ["a caption", None, None]
    assert {u.kind for u in units} == {"folder"}
