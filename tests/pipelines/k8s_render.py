"""The k8s/ trees as ``kubectl apply -k`` sends them, rendered by the real kustomize (``kubectl kustomize``).

Its strategic merge knows no merge keys for a custom resource's lists, so a hand-made merge would hide
what a cluster receives: the tests read only this render.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
TREES = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
OVERLAYS = ["dev", "prod"]


def kustomize_command() -> list[str] | None:
    """The kubectl that the test extra installs beside this Python, else a kubectl or kustomize on PATH."""
    pinned = Path(sys.executable).parent / "kubectl"
    if pinned.is_file():
        return [str(pinned), "kustomize"]
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    return None


@functools.cache
def _build(folder: Path) -> str:
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kubectl nor kustomize is installed (`make install` puts kubectl in .venv/bin)")
    done = subprocess.run([*command, str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} {folder} failed:\n{done.stderr}"
    return done.stdout


def load_docs(text: str) -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD schemas are 13k lines each
    return [d for d in yaml.load_all(text, Loader=loader) if d]


def render(folder: Path) -> list[dict]:
    """The resources ``kubectl apply -k folder`` would send, freshly parsed (tests may change them)."""
    return load_docs(_build(folder))


def by_kind(docs: list[dict]) -> dict[str, dict]:
    kinds = {}
    for doc in docs:
        assert doc["kind"] not in kinds, f"two {doc['kind']} resources"
        kinds[doc["kind"]] = doc
    return kinds


def groups(cluster: dict) -> dict[str, dict]:
    """A RayCluster's head and worker groups by name ("head" and each groupName)."""
    workers = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    return {"head": cluster["spec"]["headGroupSpec"]} | workers
