"""The part of kustomize the k8s/ tree uses: resources (files and bases), ``labels``, strategic-merge ``patches``.

Lists of objects merge by their key (``name``, ``groupName``) as Kubernetes' strategic merge does for
containers, volumes and KubeRay's worker groups; other lists and scalars are replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

MERGE_KEYS = ("groupName", "name", "mountPath")


def load_docs(path: Path) -> list[dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD schemas are 13k lines each
    return [d for d in yaml.load_all(path.read_text(), Loader=loader) if d]


def _merge_key(items: list) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    return next((k for k in MERGE_KEYS if all(k in i for i in items)), None)


def merge(base, patch):
    """Strategic merge of ``patch`` into ``base`` (neither is modified)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        key = _merge_key(base + patch)
        if key is None:
            return copy.deepcopy(patch)
        out = [copy.deepcopy(i) for i in base]
        for item in patch:
            index = next((n for n, b in enumerate(out) if b[key] == item[key]), None)
            if index is None:
                out.append(copy.deepcopy(item))
            else:
                out[index] = merge(out[index], item)
        return out
    return copy.deepcopy(patch)


def render(folder: Path) -> list[dict]:
    """The resources ``kustomize build folder`` would print, for the features above."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[dict] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        docs += render(path) if path.is_dir() else load_docs(path)
    for patch_entry in spec.get("patches", []):
        for patch in load_docs(folder / patch_entry["path"]):
            matches = [i for i, d in enumerate(docs) if d["kind"] == patch["kind"]
                       and d["metadata"]["name"] == patch["metadata"]["name"]]
            assert len(matches) == 1, f"patch {patch_entry['path']} matches {len(matches)} resources"
            docs[matches[0]] = merge(docs[matches[0]], patch)
    for label in spec.get("labels", []):
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    return docs
