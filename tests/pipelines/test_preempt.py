"""SIGTERM to the driver mid-ingest and mid-score (the open_nsfw actors up): it exits 143 in one line, keeps what
was committed, leaves no Ray behind, and the same command resumes to the same complete run without redoing
committed units."""

from __future__ import annotations

import functools
import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml
from PIL import Image
from skimage import data

from driver import NSFW_ACTOR
from manifests.layout import RunLayout
from scaleout_support import check_complete_run, descendants, processes_named, wait_until

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ROWS = 24


class _SlowPhotos(http.server.BaseHTTPRequestHandler):
    """Real photos, each answer 0.3 s late, so a crawl of a few units lasts long enough to be interrupted."""

    photo = b""

    def do_GET(self) -> None:
        time.sleep(0.3)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.photo)))
        self.end_headers()
        self.wfile.write(self.photo)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def config(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(data.coffee()).save(buf, "JPEG", quality=85)
    handler = type("Handler", (_SlowPhotos,), {"photo": buf.getvalue()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    urls = tmp_path / "urls.csv"
    urls.write_text("url,caption\n" + "".join(f"http://127.0.0.1:{server.server_port}/{i}.jpg,coffee cup {i}\n"
                                              for i in range(ROWS)))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "run"), "ray": {"num_cpus": 2},
        "input": {"path": str(urls), "rows_per_shard": 4}, "crawl": {"allow_private_addresses": True},
        "resources": {"ingest": {"concurrency": 1, "num_cpus": 1}}}))
    yield path
    server.shutdown()


def _thresher(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop_and_resume(proc: subprocess.Popen, config: Path, layout: RunLayout, committed: dict[Path, int]) -> None:
    """SIGTERM now: exit 143 in one line, Ray and the lock gone; then the same command completes the run and
    leaves every file in ``committed`` (path -> mtime) as it was."""
    ray_processes = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("thresher: stopped by SIGTERM") and "rerun the same command" in last
    assert "Traceback" not in err
    gone, alive = psutil.wait_procs(ray_processes, timeout=30)
    assert not alive, [p.name() for p in alive]  # Ray went down with the driver
    assert not (layout.root / ".lock").exists()

    again = _thresher(config)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    check_complete_run(layout.root, ROWS)
    for path, mtime in committed.items():  # committed units were not redone
        assert path.stat().st_mtime_ns == mtime, path


def test_sigterm_mid_ingest_exits_143_and_the_same_command_resumes(config):
    layout = RunLayout.at(yaml.safe_load(config.read_text())["output_dir"])
    proc = _thresher(config)
    wait_until(lambda: layout.staged_dir.exists() and list(layout.staged_dir.glob("*.parquet")), proc, timeout_s=300)
    committed = {p: p.stat().st_mtime_ns for p in layout.staged_dir.glob("*.parquet")}
    assert len(committed) < ROWS // 4  # the crawl is still going: the signal lands mid-phase
    _stop_and_resume(proc, config, layout, committed)


@pytest.mark.faults
def test_sigterm_mid_score_exits_143_and_the_same_command_resumes(config):
    """The signal lands once the open_nsfw actors are up, before score is done: units scored by then are kept,
    the others are scored by the rerun."""
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "filters": {"nsfw": {"enabled": True}}}))
    layout = RunLayout.at(settings["output_dir"])
    proc = _thresher(config)
    wait_until(lambda: layout.is_done("ingest") and processes_named(descendants(proc), NSFW_ACTOR), proc,
               timeout_s=300)
    committed = {p: p.stat().st_mtime_ns for p in [*layout.staged_dir.glob("*.parquet"), *layout.score_files()]}
    assert not layout.is_done("score")  # the signal lands mid-phase
    _stop_and_resume(proc, config, layout, committed)


def test_sigterm_during_ray_get_stops_as_preempted_not_as_rays_system_error(ray_session):
    """Ray runs the handler inside ``ray.get`` and hands its exception back as a SystemError caused by it
    (what SIGTERM mid-dedup met, whose phase waits on plain Ray tasks); the block still raises Preempted."""
    from pipelines.run.preempt import Preempted, stop_on_sigterm

    @ray_session.remote
    def sleeper() -> None:
        time.sleep(5)

    pending = sleeper.remote()
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with pytest.raises(Preempted):
        with stop_on_sigterm():
            ray_session.get(pending)
    ray_session.get(pending)  # let it end by itself: a force-cancel racing its reply aborted the driver (a Ray bug)
    with pytest.raises(ValueError):  # anything else passes unchanged
        with stop_on_sigterm():
            raise ValueError("not a signal")
