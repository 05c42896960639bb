"""Fixtures shared by every test package: one local Ray for the whole session, and the shared folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout (CI and developers), or $THRESHER_SHARED_DIR."""
    candidates = [os.environ.get("THRESHER_SHARED_DIR"), REPO.parent / "shared"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared() -> Path:
    found = shared_dir()
    if found is None:
        pytest.skip("../shared is absent (set THRESHER_SHARED_DIR to point at it)")
    return found


@pytest.fixture(scope="session")
def checkpoints(shared: Path) -> Path:
    path = shared / "checkpoints"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def decode_log(tmp_path_factory) -> Path:
    """Where the session's Ray workers log each image decode (manifests.images.DECODE_LOG_ENV)."""
    return tmp_path_factory.mktemp("decode_log")


@pytest.fixture(autouse=True)
def _release_run_locks():
    """A test's runs hold their directories' locks until the process exits; one pytest process runs many."""
    yield
    from pipelines.run.runlock import release_all

    release_all()


@pytest.fixture(scope="session")
def ray_session(decode_log):
    """One single-node Ray for the whole test session, bound to 127.0.0.1 only."""
    import ray

    from pipelines.run.runtime import bind_to_loopback

    bind_to_loopback()
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "THRESHER_DECODE_LOG": str(decode_log)}})
    yield ray
    ray.shutdown()


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
