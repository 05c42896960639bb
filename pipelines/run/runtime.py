"""Starting or joining Ray."""

from __future__ import annotations

import ipaddress
import logging
import os
import re

import ray

from pipelines.config import RayConfig

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayStartError(RuntimeError):
    """Ray could not start or be joined; the message is one line: the cause, where Ray's logs are, what to try."""


class RayNotLoopback(RayStartError):
    """A local Ray came up on an address other than loopback: it would be reachable from the network."""


def init_ray(config: RayConfig, address: str | None = None, log_to_driver: bool = True) -> None:
    """Join ``address`` / ``ray.address`` / ``RAY_ADDRESS`` if given, else start a local node on 127.0.0.1 only.

    A local Ray listens on every interface by default, exposing an unauthenticated cluster; a single
    node needs no network, so it is bound to loopback. ``log_to_driver=False`` leaves the workers' output
    in Ray's session logs instead of the console (``thresher`` without ``-v``).
    """
    if ray.is_initialized():
        return
    target = address or config.address or os.environ.get("RAY_ADDRESS")
    try:
        if target:
            ray.init(address=target, logging_level=logging.WARNING, log_to_driver=log_to_driver)
            return
        bind_to_loopback()
        ray.init(num_cpus=config.num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=log_to_driver)
    except Exception as exc:
        if not is_start_failure(exc):
            raise
        ray.shutdown()
        raise RayStartError(start_failure(exc, target)) from exc
    try:
        check_loopback(ray.util.get_node_ip_address())
    except RayNotLoopback:
        ray.shutdown()
        raise


def is_start_failure(exc: Exception) -> bool:
    """What ``ray.init`` raises when its node does not come up: RuntimeError ("Failed to start GCS", a port
    file never written), ConnectionError (no cluster at the address), or a bare Exception ("The current node
    timed out during startup" on an overloaded machine). A subclass of Exception (TypeError, ...) is a bug."""
    return isinstance(exc, (ConnectionError, RuntimeError)) or type(exc) is Exception


def start_failure(exc: BaseException, target: str | None) -> str:
    """One line for a Ray that did not start: Ray's own first line, its session logs, and the retry hint."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = lines[0] if lines else type(exc).__name__
    session = re.search(r"(/\S*?/session_[^/\s]+)", str(exc))
    logs = f"{session.group(1)}/logs" if session else "Ray's temp dir (default /tmp/ray/session_latest/logs)"
    if target:
        return (f"could not join the Ray cluster at {target} ({cause}); check that it is up and the address "
                f"(--address, ray.address or RAY_ADDRESS), then retry. Ray's logs: {logs}")
    return (f"the local Ray did not start ({cause}). Another Ray starting on this machine at the same moment "
            f"causes this: retry in a minute, or start one (ray start --head --node-ip-address=127.0.0.1) and "
            f"pass --address. Ray's logs: {logs}")


def bind_to_loopback() -> None:
    """Make the next local ``ray.init`` take 127.0.0.1 as its node address, so every Ray server binds loopback.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when ``ray`` is imported, into
    ``ray_constants.ENABLE_RAY_CLUSTER``; with it off the node address is 127.0.0.1 and gcs_server, the
    raylet, the workers and the agents listen there. Setting the variable after the import changes nothing
    for this process, so the constant is set too. The variable stays set for the processes Ray starts.
    """
    from ray._private import ray_constants

    os.environ[LOOPBACK_ONLY] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def check_loopback(node_ip: str) -> None:
    """Refuse a local Ray that came up on a network address (``init_ray`` then stops it)."""
    if ipaddress.ip_address(node_ip).is_loopback:
        return
    raise RayNotLoopback(f"the local Ray started on {node_ip}, not 127.0.0.1, so its unauthenticated ports would be "
                         f"reachable from the network; stopped it. Start a cluster yourself with `ray start --head "
                         f"--node-ip-address=127.0.0.1` and pass --address, or report this Ray version ({ray.__version__})")
