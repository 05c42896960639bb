"""What reaches the console: the native lines Ray's C++ core worker writes to the driver's stderr go to
``RUN/logs/thresher.log``; known noise stops there, anything else (a real error, a fatal check) shows too."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pipelines.run import console

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOISE = (b"[2026-11-26 02:13:30,439 E 17175 17175] core_worker.cc:2465: Actor with class name: 'MapWorker(Map(X))'"
         b" has constructor arguments in the object store and max_restarts > 0. See ray-project/ray#53727\n")
REAL = b"[2026-11-26 02:13:31,000 E 17175 17175] core_worker.cc:900: Raylet is terminated\n"


def test_native_stderr_logs_every_line_and_shows_all_but_known_noise(tmp_path, capfd):
    with console.native_stderr(tmp_path):
        os.write(2, NOISE)
        os.write(2, REAL)
        print("a warning of ours", file=sys.stderr)
    printed = capfd.readouterr().err
    assert "53727" not in printed and REAL.decode() in printed and "a warning of ours" in printed
    log = (tmp_path / console.LOG_FILE).read_bytes()
    assert NOISE in log and REAL in log and b"a warning of ours" not in log
    os.write(2, b"after the run\n")  # fd 2 is the console again
    assert capfd.readouterr().err == "after the run\n"


def test_verbose_leaves_native_stderr_on_the_console(tmp_path, capfd):
    with console.native_stderr(tmp_path, verbose=True):
        os.write(2, NOISE)
    assert "53727" in capfd.readouterr().err and not (tmp_path / console.LOG_FILE).exists()


def test_a_driver_that_aborts_still_shows_and_logs_its_last_native_lines(tmp_path):
    script = ("import os, sys\nfrom pathlib import Path\nfrom pipelines.run import console\n"
              f"with console.native_stderr(Path({str(tmp_path)!r})):\n"
              "    os.write(2, b'[ts F 1 1] raylet_client.cc:60: Check failed: boom\\n*** StackTrace ***\\n')\n"
              "    os.abort()\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, env={**os.environ, "PYTHONPATH": REPO},
                         timeout=60)
    assert out.returncode != 0 and b"Check failed: boom\n*** StackTrace ***" in out.stderr
    assert b"Check failed: boom" in (tmp_path / console.LOG_FILE).read_bytes()


def test_a_phase_with_nothing_to_do_says_so_and_draws_no_bar(tmp_path, capsys):
    from manifests.layout import RunLayout
    from pipelines.config import build_config
    from pipelines.run.driver import Run, phase

    assert console.phase("dedup", dict, idle="no duplicate detector enabled") == {}
    out, err = capsys.readouterr()
    assert out == "dedup: nothing to do (no duplicate detector enabled)\n" and err == ""
    console.phase("decide", dict)
    err = capsys.readouterr().err
    assert "decide: 100%" in err and "phase/s" not in err and "s/phase" not in err  # its time, not a rate
    config = build_config({"output_dir": str(tmp_path), "input": {"path": "x.parquet"},
                           "dedup": {"exact": {"enabled": False}}})  # exact dedup is on by default
    run = Run(config, config, RunLayout.at(tmp_path), (), ())
    assert phase("dedup").idle(run) == "no duplicate detector enabled"
    assert phase("caption").idle(run) == "no captioner enabled" and phase("decide").idle(run) is None
    on = build_config({"output_dir": str(tmp_path), "input": {"path": "x.parquet"}, "dedup": {"exact": {"enabled": True}}})
    assert phase("dedup").idle(Run(on, on, RunLayout.at(tmp_path), (), ())) is None


@pytest.mark.slow
def test_row_progress_moves_while_a_unit_is_still_working(ray_session, tmp_path, capsys):
    """Tasks report rows as they finish: the driver sees them before the task (a whole unit) returns."""
    import ray

    from manifests.schema import Status
    from pipelines.run.progress import RowReporter, row_bar

    gate = tmp_path / "gate"

    def unit(counter) -> None:  # defined here: pickled by value for the worker
        report = RowReporter(counter)
        for status in (Status.SUCCESS, Status.FAILED_TO_DOWNLOAD, Status.SUCCESS):
            report(status)
        report.flush()
        while not gate.exists():
            time.sleep(0.05)

    with row_bar("ingest", 3) as counter:
        task = ray.remote(unit).remote(counter)
        deadline = time.monotonic() + 120
        while ray.get(counter.read.remote()) != (3, 1):
            assert time.monotonic() < deadline, "the rows never reached the driver"
            time.sleep(0.1)
        assert not ray.wait([task], timeout=0)[0]  # the unit is still working
        gate.touch()
        ray.get(task)
    err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    assert "3/3" in err[-1] and ("row/s" in err[-1] or "s/row" in err[-1]) and "failed 1" in err[-1], err[-1]


@pytest.mark.slow
def test_single_phase_commands_count_rows_and_print_a_summary(ray_session, tmp_path, capsys):
    """thresher ingest: a bar in rows with failures, then a table (not a dict); thresher run: a phase with
    nothing to do says so in one line and draws no bar."""
    import yaml

    from pipelines.cli.corpus import build_corpus
    from pipelines.cli.demo import serve_files, write_url_list
    from pipelines.cli.main import main

    files, rows = build_corpus(samples=30, seed=5)
    config = tmp_path / "config.yaml"
    with serve_files(files) as base_url:
        url_list = write_url_list(rows, base_url, tmp_path / "urls.parquet")
        config.write_text(yaml.safe_dump({
            "output_dir": str(tmp_path / "run"), "input": {"kind": "url_list", "path": str(url_list)},
            "crawl": {"allow_private_addresses": True, "retries": 0, "image_size": 128},
            "dedup": {"exact": {"enabled": False}},  # on by default; this run checks a phase with nothing to do
            "resources": {"ingest": {"concurrency": 1}, "export": {"concurrency": 1}}}))
        assert main(["ingest", str(config)]) == 0
    out, err = capsys.readouterr()
    bar = err.replace("\r", "\n").strip().splitlines()[-1]
    assert f"{len(rows)}/{len(rows)}" in bar and ("row/s" in bar or "s/row" in bar) and "failed " in bar, err
    assert out.startswith(f"Thresher ingest: {tmp_path / 'run'}") and "input rows" in out and "{'" not in out, out
    assert f"next      thresher score {tmp_path / 'run'}" in out
    assert main(["run", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "dedup: nothing to do (no duplicate detector enabled)" in out and "caption: nothing to do" in out
    assert "dedup:" not in err and "caption:" not in err and "decide: 100%" in err
    assert "Thresher run:" in out


def test_a_full_volume_drops_log_lines_without_a_traceback_per_record(tmp_path, capfd):
    """/dev/full answers every write with ENOSPC, as the run's volume does once it fills."""
    import logging

    path = console.setup(tmp_path)
    logger = logging.getLogger("thresher-test-full")
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "baseFilename", None) == str(path))
    handler.stream = open("/dev/full", "w", encoding="utf-8")
    try:
        logger.info("a line the full volume cannot take")
        handler.stream = open(path, encoding="utf-8")  # read-only: a failure that is not a full disk
        logger.info("a line that fails for another reason")
    finally:
        console.setup(None)
    err = capfd.readouterr().err
    assert err.count("--- Logging error ---") == 1 and "not writable" in err


def test_the_phase_table_runs_the_phases_the_run_directory_names_in_order():
    """``PHASE_NAMES`` (the run directory's folders, which the CLI and tools read without Ray) and ``PHASES`` (what
    runs each) are one order."""
    from manifests.layout import PHASE_NAMES
    from pipelines.run import phases

    assert tuple(p.name for p in phases.PHASES) == PHASE_NAMES
    assert [p.run for p in phases.PHASES] == [getattr(phases, name) for name in PHASE_NAMES]
