"""Starting or joining Ray."""

from __future__ import annotations

import logging
import os

import ray

from pipelines.config import RayConfig

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


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
    os.environ[LOOPBACK_ONLY] = "0"
    ray.init(num_cpus=config.num_cpus, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=log_to_driver)
