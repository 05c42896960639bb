"""k8s/ closes Ray to the network: token auth from a Secret on every Ray container, and a NetworkPolicy.

Read off the real kustomize render; the policy is evaluated as Kubernetes evaluates label selectors, on
the labels KubeRay gives a cluster's pods.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from k8s_render import REPO, TREES, by_kind, groups, render

AUTH_SECRET_KEY = "auth_token"  # the key KubeRay and the README's `kubectl create secret` line use


def _containers(docs: dict[str, dict]) -> dict[str, dict]:
    """Every container that runs Ray or talks to it: each group's, and the RayJob submitter's."""
    out = {f"{name}/{c['name']}": c for name, group in groups(docs["RayCluster"]).items()
           for c in group["template"]["spec"]["containers"]}
    out |= {f"job/{c['name']}": c for c in docs["RayJob"]["spec"]["submitterPodTemplate"]["spec"]["containers"]}
    return out


@pytest.mark.parametrize("tree", TREES)
def test_ray_demands_a_token_from_a_secret_on_every_pod(tree: str) -> None:
    docs = by_kind(render(TREES[tree]))
    auth = docs["RayCluster"]["spec"]["authOptions"]
    assert auth["mode"] == "token"
    secret = auth["secretName"]
    for name, container in _containers(docs).items():
        env = {e["name"]: e for e in container.get("env", [])}
        assert env.get("RAY_AUTH_MODE") == {"name": "RAY_AUTH_MODE", "value": "token"}, name
        token = env.get("RAY_AUTH_TOKEN", {})
        assert "value" not in token and token.get("valueFrom") == \
            {"secretKeyRef": {"name": secret, "key": AUTH_SECRET_KEY}}, f"{name}: {token}"
    assert "Secret" not in docs, "the token Secret is made at deploy time, never committed"
    deploy = (REPO / "README.md").read_text().split("## Deploy on Kubernetes")[1].split("\n## ")[0]
    assert f"kubectl create secret generic {secret}" in deploy and f"--from-literal={AUTH_SECRET_KEY}=" in deploy


def test_ray_reads_the_token_the_manifests_pass(tmp_path: Path) -> None:
    """The installed Ray turns token auth on from exactly the variables the manifests set (no cluster needed)."""
    env = {e["name"]: e.get("value") for e in _containers(by_kind(render(TREES["base"])))["head/ray-head"]["env"]}
    probe = ("from ray._raylet import AuthenticationMode, AuthenticationTokenLoader, get_authentication_mode\n"
             "print(get_authentication_mode() == AuthenticationMode.TOKEN, "
             "AuthenticationTokenLoader.instance().get_raw_token())")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(tmp_path)}
    for token_env, want in (({"RAY_AUTH_MODE": env["RAY_AUTH_MODE"], "RAY_AUTH_TOKEN": "s3cr3t-from-the-secret"},
                             "True s3cr3t-from-the-secret"), ({}, "False")):
        done = subprocess.run([sys.executable, "-c", probe], env=clean | token_env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[0].startswith(want), (token_env, done.stdout)


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against one object's labels."""
    ops = {"In": lambda k, vs: labels.get(k) in vs, "NotIn": lambda k, vs: labels.get(k) not in vs,
           "Exists": lambda k, vs: k in labels, "DoesNotExist": lambda k, vs: k not in labels}
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and \
        all(ops[e["operator"]](e["key"], e.get("values", [])) for e in selector.get("matchExpressions", []))


def _admits(policy: dict, pod: dict[str, str], port: int, namespace: dict[str, str] | None = None) -> bool:
    """Whether ``policy`` lets a pod with labels ``pod`` (in the policy's namespace when ``namespace`` is None)
    open ``port``. A rule without ``from`` admits everyone; an ipBlock peer is taken to admit anyone."""
    for rule in policy["spec"].get("ingress", []):
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        if "from" not in rule:
            return True
        for peer in rule["from"]:
            if "ipBlock" in peer:
                return True
            ns_ok = _selects(peer["namespaceSelector"], namespace or {}) if "namespaceSelector" in peer \
                else namespace is None
            if ns_ok and _selects(peer.get("podSelector", {}), pod):
                return True
    return False


def _ray_pod_labels(cluster: dict) -> dict[str, dict[str, str]]:
    """The labels of each group's pods: the template's plus those KubeRay sets and lets no template override
    (ray-operator/controllers/ray/common/pod.go, labelPod)."""
    out = {}
    for name, group in groups(cluster).items():
        kuberay = {"ray.io/cluster": cluster["metadata"]["name"], "ray.io/group": group.get("groupName", "headgroup"),
                   "ray.io/node-type": "head" if name == "head" else "worker"}
        out[name] = group["template"].get("metadata", {}).get("labels", {}) | kuberay
    return out


RAY_PORTS = [6379, 8265, 10001, 8080, 52365, 10002, 19999, 40123]  # fixed ones, the worker range, a picked one


@pytest.mark.parametrize("tree", TREES)
def test_network_policy_admits_the_ray_pods_and_keeps_others_to_the_dashboard(tree: str) -> None:
    docs = by_kind(render(TREES[tree]))
    policy, ray_pods = docs["NetworkPolicy"], _ray_pod_labels(docs["RayCluster"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for name, labels in ray_pods.items():
        assert _selects(policy["spec"]["podSelector"], labels), f"the policy does not cover the {name} pods"
        for port in RAY_PORTS:
            assert all(_admits(policy, other, port) for other in ray_pods.values()), f"{name} pods: port {port}"
    submitter = docs["RayJob"]["spec"]["submitterPodTemplate"]["metadata"]["labels"]
    operator = {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/component": "kuberay-operator"}
    elsewhere = {"kubernetes.io/metadata.name": "ray-system"}
    assert _admits(policy, submitter, 8265) and _admits(policy, operator, 8265, elsewhere)
    strangers = [({}, None), ({"app.kubernetes.io/name": "thresher"}, None), ({"app": "web"}, elsewhere),
                 (ray_pods["head"], elsewhere)]  # the last: another namespace's Ray cluster of the same name
    for port in RAY_PORTS:
        if port != 8265:
            assert not _admits(policy, submitter, port) and not _admits(policy, operator, port, elsewhere), port
        for labels, namespace in strangers:
            assert not _admits(policy, labels, port, namespace), (labels, namespace, port)
