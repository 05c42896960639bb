"""k8s/: every manifest, base and rendered overlays, against the KubeRay CRD schemas, and consistent with the config.

Rendered by the real kustomize (k8s_render.py): an overlay must keep every group's pod but its resources.

Consistency: one image everywhere, the one the Dockerfile builds; the Ray version the Dockerfile pins;
the RayJob's config path mounted from the ConfigMap on the head; the run's staging dir on the volume
every pod shares; and the cluster at its autoscaling bounds can place every pool of the config
(the same check ``thresher run`` does against a live cluster, here against the pods' requests).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from k8s_render import OVERLAYS, REPO, TREES, by_kind, groups, load_docs, render
from manifests.config import StrictModel
from pipelines.config import RunConfig, build_config
from pipelines.run.cluster import Pool, check_pools, stage_pools
from pipelines.run.stages import check_resources, score_stages

CONFIG_KEY = "thresher.yaml"
KUBERNETES = "1.30"  # the oldest Kubernetes the built-in kinds are checked against


def _strict(schema):
    """The API server rejects unknown fields in a structural schema (kubectl --validate=strict): so do we."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_schemas(shared: Path) -> dict[str, jsonschema.Draft7Validator]:
    folder = shared / "schemas" / "kuberay"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    schemas = {}
    for path in folder.glob("*.yaml"):
        for crd in load_docs(path.read_text()):
            for version in crd["spec"]["versions"]:
                key = f"{crd['spec']['group']}/{version['name']}:{crd['spec']['names']['kind']}"
                schemas[key] = jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))
    return schemas


def _config(docs: dict[str, dict]) -> RunConfig:
    return build_config(yaml.safe_load(docs["ConfigMap"]["data"][CONFIG_KEY]))


def _quantity(value: str | int) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _pod_resources(group: dict) -> dict[str, float]:
    """What one pod of a group gives Ray: CPUs and GPUs from its limits, custom resources from rayStartParams."""
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    params = group.get("rayStartParams", {})
    res = {"CPU": _quantity(params.get("num-cpus", limits.get("cpu", 0))),
           "GPU": _quantity(limits.get("nvidia.com/gpu", 0))}
    if "resources" in params:
        res.update(json.loads(json.loads(params["resources"])))
    return {k: v for k, v in res.items() if v}


def _pods(cluster: dict) -> list[dict]:
    return [cluster["spec"]["headGroupSpec"]["template"]["spec"]] + \
           [g["template"]["spec"] for g in cluster["spec"]["workerGroupSpecs"]]


@pytest.mark.parametrize("tree", TREES)
def test_manifests_match_the_kuberay_schemas(tree: str, crd_schemas) -> None:
    """The custom resources against KubeRay's CRDs, the built-in kinds against Kubernetes' own schemas (strict)."""
    docs = render(TREES[tree])
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "NetworkPolicy", "PersistentVolumeClaim",
                                               "RayCluster", "RayJob"]
    for doc in docs:
        if doc["apiVersion"].startswith("ray.io/"):
            crd_schemas[f"{doc['apiVersion']}:{doc['kind']}"].validate(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "thresher"


@pytest.mark.parametrize("tree", TREES)
def test_config_in_the_configmap_is_valid(tree: str) -> None:
    config = _config(by_kind(render(TREES[tree])))
    check_resources(config)


def test_one_image_the_dockerfile_builds_with_the_pinned_ray() -> None:
    version = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    dockerfile = (REPO / "Dockerfile").read_text()
    for tree in TREES.values():
        docs = by_kind(render(tree))
        cluster, job = docs["RayCluster"], docs["RayJob"]
        images = {c["image"] for pod in _pods(cluster) for c in pod["containers"]}
        images |= {c["image"] for c in job["spec"]["submitterPodTemplate"]["spec"]["containers"]}
        assert images == {f"ghcr.io/thresher-project/thresher:{version}"}
        assert f"docker build -t {images.pop()} ." in dockerfile
        assert f'"ray[default,data]=={cluster["spec"]["rayVersion"]}"' in dockerfile


@pytest.mark.parametrize("tree", TREES)
def test_job_reads_the_mounted_config_and_pods_share_the_run_dir(tree: str) -> None:
    docs = by_kind(render(TREES[tree]))
    cluster, job, configmap = docs["RayCluster"], docs["RayJob"], docs["ConfigMap"]
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["thresher", "run"]
    config_path = Path(argv[2])
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    volume = next(v for v in head["volumes"] if v.get("configMap", {}).get("name") == configmap["metadata"]["name"])
    mount = next(m for m in head["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
    assert config_path == Path(mount["mountPath"]) / CONFIG_KEY and CONFIG_KEY in configmap["data"]
    staging = Path(_config(docs).staging_dir)
    claim = docs["PersistentVolumeClaim"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for pod in _pods(cluster):  # every worker writes staged images and shards under the run dir
        data = next(v["name"] for v in pod["volumes"]
                    if v.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"])
        mounts = [Path(m["mountPath"]) for m in pod["containers"][0]["volumeMounts"] if m["name"] == data]
        assert any(staging.is_relative_to(m) for m in mounts)


@pytest.mark.parametrize("tree", TREES)
def test_cluster_at_its_bounds_fits_every_pool_of_the_config(tree: str) -> None:
    docs = by_kind(render(TREES[tree]))
    cluster, config = docs["RayCluster"], _config(docs)
    head = {"CPU": _quantity(cluster["spec"]["headGroupSpec"]["rayStartParams"].get("num-cpus", 1))}
    nodes = [head] + [_pod_resources(g) for g in cluster["spec"]["workerGroupSpecs"]
                      for _ in range(g["maxReplicas"])]
    stages = stage_pools(score_stages(config))
    assert stages, "the k8s config enables no model stage: the GPU group would idle"
    for phase, pools in (("ingest", [Pool("resources.ingest", config.resources.ingest)]), ("score", stages),
                         ("export", [Pool("resources.export", config.resources.export)])):
        assert check_pools(phase, pools, nodes) == [], f"{tree}: {phase} does not fit at max replicas"
    for name, res in config.resources.stages.items():
        if res.num_gpus:
            assert res.resources, f"resources.stages.{name}: a GPU stage should name the gpu_node resource"
    for group in cluster["spec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def _diff(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in a.keys() | b.keys() for d in _diff(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}/{i}")]
    return [] if a == b else [path]


RESOURCE_PATH = re.compile(r"/(replicas|minReplicas|maxReplicas|resources(/.*)?|rayStartParams/resources)$")


@pytest.mark.parametrize("tree", OVERLAYS)
def test_overlays_change_resources_only(tree: str) -> None:
    base, overlay = by_kind(render(TREES["base"])), by_kind(render(TREES[tree]))
    changed = _diff(base["RayCluster"], overlay["RayCluster"]) + _diff(base["RayJob"], overlay["RayJob"])
    assert changed and all(RESOURCE_PATH.search(p) for p in changed), changed
    base_config = yaml.safe_load(base["ConfigMap"]["data"][CONFIG_KEY])
    overlay_config = yaml.safe_load(overlay["ConfigMap"]["data"][CONFIG_KEY])
    assert {k for k in base_config.keys() | overlay_config.keys()
            if base_config.get(k) != overlay_config.get(k)} == {"resources"}
    assert isinstance(_config(overlay).resources, StrictModel)


@pytest.mark.parametrize("tree", OVERLAYS)
def test_every_group_of_an_overlay_keeps_the_base_pod_but_its_resources(tree: str) -> None:
    """A patch that replaces a list whole leaves groups that pass the schema and run no Ray: named fields here."""
    base, overlay = (groups(by_kind(render(TREES[t]))["RayCluster"]) for t in ("base", tree))
    assert list(overlay) == list(base), f"{tree}: groups {list(overlay)}, base has {list(base)}"
    lost = []
    for name, group in overlay.items():
        want_pod, pod = base[name]["template"]["spec"], group["template"]["spec"]
        assert len(pod["containers"]) == len(want_pod["containers"]), f"{tree}/{name}: containers"
        for want, got in zip(want_pod["containers"], pod["containers"]):
            lost += [f"{name}: {want['name']}.{key}" for key in ("name", "image", "env", "envFrom", "volumeMounts",
                                                                 "ports") if got.get(key) != want.get(key)]
            assert got["resources"]["limits"], f"{tree}/{name}: container {want['name']} has no limits"
        lost += [f"{name}: pod {key}" for key in want_pod.keys() - {"containers"} if pod.get(key) != want_pod[key]]
        want_params, params = base[name]["rayStartParams"], group.get("rayStartParams", {})
        lost += [f"{name}: rayStartParams.{key}" for key in want_params.keys() | params.keys()
                 if key not in params or key not in want_params
                 or (key != "resources" and params[key] != want_params[key])]
    assert not lost, f"{tree} differs from base beyond resources: {', '.join(sorted(lost))}"


def test_an_unknown_field_fails_the_schema_check(crd_schemas) -> None:
    docs = by_kind(render(TREES["base"]))
    cluster = docs["RayCluster"]
    cluster["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3  # typo of maxReplicas
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        crd_schemas["ray.io/v1:RayCluster"].validate(cluster)
    policy = docs["NetworkPolicy"]
    policy["spec"]["ingress"][0]["form"] = policy["spec"]["ingress"][0].pop("from")  # typo of from
    with pytest.raises(kubernetes_validate.ValidationError, match="form"):
        kubernetes_validate.validate(policy, KUBERNETES, strict=True)
