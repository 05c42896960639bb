"""CSV and TSV lists never merge rows: a stray quote anywhere in a large file fails before any work, naming
its physical line; legitimate quoted fields (delimiters, doubled quotes, line breaks) are read as RFC 4180
says, and every other record is one row. JSON lines get the same care: a raw line break inside a string is
two bad lines, each a row, never a merge."""

from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pytest

from crawl.config import InputConfig
from crawl.csvlist import csv_tables
from crawl.inputcheck import check_input
from crawl.readers import INPUT_ERROR, InputError, read_batches
from manifests import schema as col

ROWS = 60_000  # about 3 MiB: several of the reader's 1 MiB blocks


def _cells(i: int) -> tuple[str, str]:
    if i % 997 == 5:  # a legitimate multi-line caption with the delimiters and a doubled quote inside
        return f"http://x.invalid/{i}.jpg", f'line one, of {i}\tand a "quoted" word\nline two, http://nope'
    return f"http://x.invalid/{i}.jpg", f"caption {i}, with 5\" of text"


def _write(path, rows: list[str]) -> None:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    path.write_text(f"url{delimiter}caption\n" + "\n".join(rows) + "\n")


def _rows(delimiter: str, n: int = ROWS) -> list[str]:
    """One string per record, written as Python's csv writer writes it (quotes only where needed)."""
    out = []
    for i in range(n):
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator="").writerow(_cells(i))
        out.append(buf.getvalue())
    return out


def _line(rows: list[str], index: int) -> int:
    """The 1-based physical line a record starts on (the header is line 1)."""
    return 2 + index + sum(r.count("\n") for r in rows[:index])


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
@pytest.mark.parametrize("where", [0, ROWS // 2, ROWS - 1])
def test_a_stray_quote_fails_before_any_work_naming_its_line(tmp_path, suffix, where):
    delimiter = "\t" if suffix == ".tsv" else ","
    rows = _rows(delimiter)
    rows[where] = f'http://x.invalid/{where}.jpg{delimiter}"a caption whose quote is never closed'
    path = tmp_path / f"in{suffix}"
    _write(path, rows)
    for attempt in (lambda: check_input(InputConfig(path=str(path))),
                    lambda: sum(t.num_rows for t in read_batches(path, "csv", ["url", "caption"]))):
        with pytest.raises(InputError) as info:
            attempt()
        message = str(info.value)
        assert f"{path} line {_line(rows, where)}: a quote opened in this row " in message, message
        assert "\n" not in message and "double a quote" in message


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_stray_quote_closed_by_a_later_quote_still_fails(tmp_path, suffix):
    """The open quote ends at the next legitimately quoted field, leaving a row with the right field count:
    the lines it swallowed read as rows of their own."""
    delimiter = "\t" if suffix == ".tsv" else ","
    rows = _rows(delimiter)
    rows[1000] = f'http://x.invalid/1000.jpg{delimiter}"stray'
    rows[1001:1006] = [f"http://x.invalid/{i}.jpg{delimiter}plain caption {i}" for i in range(1001, 1006)]
    rows[1006] = f'http://x.invalid/1006.jpg{delimiter}"a ""quoted"" word"'
    path = tmp_path / f"in{suffix}"
    _write(path, rows)
    with pytest.raises(InputError, match=rf"line {_line(rows, 1000)}: .* runs on over line {_line(rows, 1000) + 1},"):
        check_input(InputConfig(path=str(path)))


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
@pytest.mark.parametrize("block_size", [4096, 1 << 20])
def test_quoted_fields_keep_their_lines_and_every_record_is_one_row(tmp_path, suffix, block_size):
    """RFC 4180 fields, a literal quote inside an unquoted field, a blank line and a row with a wrong field
    count (an invalid_input_row naming its physical line), across read blocks: equal to Python's csv module."""
    delimiter = "\t" if suffix == ".tsv" else ","
    rows = _rows(delimiter, 20_000)
    rows[15_000] = f"http://x.invalid/bad.jpg{delimiter}a caption{delimiter}an extra field"
    rows[9_000] += "\n"  # a blank line after it
    rows[7_000] = f'http://x.invalid/7000.jpg{delimiter}a 5" screen'  # a quote inside an unquoted field is text
    path = tmp_path / f"in{suffix}"
    _write(path, rows)
    check_input(InputConfig(path=str(path)))
    got = pa.concat_tables(csv_tables(path, ["url", "caption"], block_size=block_size)).to_pylist()
    with path.open(newline="") as f:
        expected = [r for r in csv.reader(f, delimiter=delimiter)][1:]
    good = [r for r in got if not r[INPUT_ERROR]]
    assert [[r["url"], r["caption"]] for r in good] == [r for r in expected if len(r) == 2]
    assert len(got) == 20_000 and [r[col.SOURCE_ROW] for r in got] == sorted(r[col.SOURCE_ROW] for r in got)
    (bad,) = [r for r in got if r[INPUT_ERROR]]
    assert bad[INPUT_ERROR].startswith(f"in{suffix} line {_line(rows, 15_000)}: 3 fields where the header has 2")
    assert got[15_000] is bad  # in file order, not after its block's good rows


def test_a_single_column_list_skips_blank_lines(tmp_path):
    (tmp_path / "in.csv").write_text('url\nhttp://x.invalid/0.jpg\n\n"http://x.invalid/2.jpg"\nhttp://x.invalid/3.jpg')
    rows = pa.concat_tables(read_batches(tmp_path / "in.csv", "csv", ["url"])).to_pylist()
    assert [(r["url"], r[col.SOURCE_ROW]) for r in rows] == [(f"http://x.invalid/{i}.jpg", i) for i in (0, 2, 3)]


def test_a_raw_line_break_inside_a_json_string_is_two_bad_lines_not_a_merge(tmp_path):
    lines = [json.dumps({"url": f"http://x.invalid/{i}.jpg", "caption": f"cap {i}\nescaped"}) for i in range(ROWS)]
    lines[30_000] = '{"url": "http://x.invalid/30000.jpg", "caption": "a raw\nline break"}'
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    check_input(InputConfig(path=str(tmp_path / "in.jsonl")))
    rows = pa.concat_tables(read_batches(tmp_path / "in.jsonl", "jsonl", ["url", "caption"])).to_pylist()
    assert [r[col.SOURCE_ROW] for r in rows] == list(range(ROWS + 1))  # one row per physical line
    bad = [r for r in rows if r[INPUT_ERROR]]
    assert [r[col.SOURCE_ROW] for r in bad] == [30_000, 30_001]
    assert [r[INPUT_ERROR].split(":")[0] for r in bad] == ["in.jsonl line 30001", "in.jsonl line 30002"]
    assert rows[5]["caption"] == "cap 5\nescaped"
