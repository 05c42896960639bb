"""Starting or joining Ray."""

from __future__ import annotations

import ipaddress
import logging
import os

import ray

from pipelines.config import RayConfig

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayNotLoopback(RuntimeError):
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
    if target:
        ray.init(address=target, logging_level=logging.WARNING, log_to_driver=log_to_driver)
        return
    bind_to_loopback()
    ray.init(num_cpus=config.num_cpus, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=log_to_driver)
    check_loopback(ray.util.get_node_ip_address())


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
    """Stop a local Ray that came up on a network address instead of running exposed."""
    if ipaddress.ip_address(node_ip).is_loopback:
        return
    ray.shutdown()
    raise RayNotLoopback(f"the local Ray started on {node_ip}, not 127.0.0.1, so its unauthenticated ports would be "
                         f"reachable from the network; stopped it. Start a cluster yourself with `ray start --head "
                         f"--node-ip-address=127.0.0.1` and pass --address, or report this Ray version ({ray.__version__})")
