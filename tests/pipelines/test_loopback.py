"""A local run binds every Ray server to loopback, even when the shell never set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER."""

from __future__ import annotations

import functools
import http.server
import ipaddress
import os
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

from pipelines.run.runtime import RayNotLoopback, check_loopback

REPO = Path(__file__).resolve().parents[2]


def test_a_network_node_address_is_refused():
    check_loopback("127.0.0.1")
    with pytest.raises(RayNotLoopback, match="10.1.2.3, not 127.0.0.1"):
        check_loopback("10.1.2.3")


@pytest.fixture
def origin(tmp_path):
    """Eight real photos served on 127.0.0.1; yields the URL list's path."""
    site = tmp_path / "site"
    site.mkdir()
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(8):
        Image.fromarray(photos[i % 4]).rotate(90 * (i // 4)).save(site / f"{i}.jpg", quality=90)
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    urls = tmp_path / "urls.csv"
    urls.write_text("url,caption\n" + "".join(
        f"http://127.0.0.1:{server.server_port}/{i}.jpg,photo number {i}\n" for i in range(8)))
    yield urls
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _listening(root: psutil.Process) -> dict[tuple[str, str, int], str]:
    """Every listening TCP socket of ``root``'s descendants (Ray's servers, workers and agents): addr -> process."""
    found = {}
    for proc in root.children(recursive=True):
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found[(proc.name(), conn.laddr.ip, conn.laddr.port)] = proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return address.is_loopback or getattr(address, "ipv4_mapped", None) is not None and address.ipv4_mapped.is_loopback


@pytest.mark.slow
def test_a_local_run_listens_on_loopback_only_from_a_clean_shell(tmp_path, origin):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "run"),
                                      "input": {"path": str(origin), "rows_per_shard": 4}, "ray": {"num_cpus": 2},
                                      "crawl": {"allow_private_addresses": True}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # as a user's shell would be
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines", "run", str(config)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    driver, sockets = psutil.Process(proc.pid), {}
    while proc.poll() is None:
        sockets.update(_listening(driver))
        time.sleep(0.2)
    printed = proc.stdout.read().decode("utf-8", "replace")
    assert proc.returncode == 0, printed[-3000:]
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets  # the sampling saw Ray's servers, not an empty moment
    exposed = sorted(key for key in sockets if not _is_loopback(key[1]))
    assert exposed == [], f"Ray listens beyond loopback: {exposed}"
