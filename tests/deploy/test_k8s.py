"""deploy/k8s: every manifest valid against the Kubernetes schemas (kubernetes-validate,
strict), workers bounded by the flow partitions, collectors with only NET_RAW/NET_ADMIN."""

from __future__ import annotations

import pytest
import yaml

from finsa.collectors.agent.config import load_agent_config
from tests.deploy.helpers import K8S, load_yaml_all, need_module

MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _resources() -> list[dict]:
    return [doc for path in MANIFESTS for doc in load_yaml_all(path)]


def _one(kind: str, name: str) -> dict:
    return next(r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_valid_against_kubernetes_schemas(path) -> None:
    kubernetes_validate = need_module("kubernetes_validate")
    for doc in load_yaml_all(path):
        kubernetes_validate.validate(doc, "1.33", strict=True)
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_validator_catches_a_bad_field() -> None:
    kubernetes_validate = need_module("kubernetes_validate")
    bad = _one("Deployment", "finsa-worker")
    bad["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.33", strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS]


def test_workers_never_outnumber_flow_partitions() -> None:
    worker = _one("Deployment", "finsa-worker")
    partitions = int(_one("ConfigMap", "finsa-worker")["data"]["FLOW_PARTITIONS"])
    assert worker["spec"]["replicas"] <= partitions
    assert worker["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_collectors_have_host_network_and_only_capture_capabilities() -> None:
    spec = _one("DaemonSet", "finsa-collector")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    for container in spec["containers"]:
        caps = container["securityContext"]["capabilities"]
        assert caps["drop"] == ["ALL"] and caps["add"] == ["NET_RAW"]  # issue 15: NET_RAW suffices


def test_every_container_is_non_root_and_sized() -> None:
    for resource in _resources():
        pod = resource.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert {"requests", "limits"} <= set(container["resources"]), container["name"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_daemonset_agent_config_is_valid(tmp_path) -> None:
    text = _one("ConfigMap", "finsa-agent")["data"]["agent.toml"]
    for name, content in (("pseudonym.key", "ab" * 32), ("batch-signing.key", "cd" * 32),
                          ("broker.password", "pw"), ("ca.pem", "-----BEGIN CERTIFICATE-----\n")):
        (tmp_path / name).write_text(content)
    text = text.replace("/etc/finsa/credentials", str(tmp_path)).replace("/var/lib/finsa", str(tmp_path))
    (tmp_path / "agent.toml").write_text(text)
    config = load_agent_config(tmp_path / "agent.toml")
    assert config.sources.interfaces == ["ens1f0"] and config.batch_signing_key_file is not None
