"""A full output volume (a small tmpfs) mid-ingest: one line naming the path and the space needed, exit 74;
after the volume grows, the same command completes and what was committed before was kept, not redone."""

from __future__ import annotations

import errno
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from PIL import Image
from skimage import data

from manifests.layout import RunLayout
from pipelines.run.diskspace import is_disk_full
from scaleout_support import check_complete_run

REPO = Path(__file__).resolve().parents[2]
ROWS = 40


def test_a_full_disk_is_recognised_however_it_is_wrapped():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("UDF failed to process a data block.") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    ray_style = RuntimeError("ray::MapWorker() ... OSError: [Errno 28] No space left on device")  # worker traceback text
    assert is_disk_full(ray_style)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("no space in this caption"))


@pytest.fixture
def small_volume(tmp_path):
    """A 1 MB tmpfs (root only); grown later by remounting."""
    mnt = tmp_path / "volume"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.fixture
def origin(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(ROWS):
        Image.fromarray(photos[i % 4]).rotate(i * 7).save(site / f"{i}.jpg", quality=95)
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _thresher(config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run([sys.executable, "-m", "pipelines", "run", str(config)], env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_a_full_volume_ends_in_one_line_and_a_rerun_after_growing_it_completes(tmp_path, small_volume, origin):
    urls = tmp_path / "urls.csv"
    urls.write_text("url,caption\n" + "".join(f"{origin}/{i}.jpg,a photo {i}\n" for i in range(ROWS)))
    config = tmp_path / "config.yaml"
    root = small_volume / "run"
    config.write_text(yaml.safe_dump({
        "output_dir": str(root), "ray": {"num_cpus": 2}, "input": {"path": str(urls), "rows_per_shard": 10},
        "crawl": {"image_size": 512, "resize_mode": "no", "allow_private_addresses": True}}))
    full = _thresher(config)
    assert full.returncode == 74, full.stderr[-3000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith(f"thresher: no space left on the volume of {root} during ingest: ")
    assert "needs about" in last and "rerun the same command" in last and "Traceback" not in full.stderr
    layout = RunLayout.at(root)
    before = {p.name: p.stat().st_mtime_ns for p in layout.staged_dir.glob("*.parquet")}

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_volume)], check=True)
    again = _thresher(config)
    assert again.returncode == 0, again.stderr[-3000:]
    check_complete_run(root, ROWS)
    for name, mtime in before.items():  # what was committed on the full volume was kept, not redone
        assert (layout.staged_dir / name).stat().st_mtime_ns == mtime


def test_a_volume_full_before_the_run_starts_ends_in_one_line_and_leaves_no_lock_behind(tmp_path, small_volume):
    """The run lock and the config are the first writes; no Ray is started before them."""
    urls = tmp_path / "urls.csv"
    urls.write_text("url,caption\nhttp://127.0.0.1:9/0.jpg,a photo\n")
    config = tmp_path / "config.yaml"
    root = small_volume / "run"
    config.write_text(yaml.safe_dump({"output_dir": str(root), "input": {"path": str(urls)},
                                      "crawl": {"allow_private_addresses": True}}))
    with open(small_volume / "filler", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, shutil.disk_usage(small_volume).free)
    full = _thresher(config)
    assert full.returncode == 74, full.stderr[-3000:]
    assert full.stderr.strip().splitlines()[-1].startswith(f"thresher: no space left on the volume of {root} "), \
        full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    assert not list(root.glob(".lock*"))  # neither the lock nor the file it is linked from
