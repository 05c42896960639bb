"""What reaches the console: the native lines Ray's C++ core worker writes to the driver's stderr go to
``RUN/logs/thresher.log``; known noise stops there, anything else (a real error, a fatal check) shows too."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines import console

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
    script = ("import os, sys\nfrom pathlib import Path\nfrom pipelines import console\n"
              f"with console.native_stderr(Path({str(tmp_path)!r})):\n"
              "    os.write(2, b'[ts F 1 1] raylet_client.cc:60: Check failed: boom\\n*** StackTrace ***\\n')\n"
              "    os.abort()\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, env={**os.environ, "PYTHONPATH": REPO},
                         timeout=60)
    assert out.returncode != 0 and b"Check failed: boom\n*** StackTrace ***" in out.stderr
    assert b"Check failed: boom" in (tmp_path / console.LOG_FILE).read_bytes()
