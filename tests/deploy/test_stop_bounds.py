"""The deploy files give every finsa process time to drain: the service manager's stop timeout
(systemd ``TimeoutStopSec``, Kubernetes ``terminationGracePeriodSeconds``) is longer than the
drain bound the process is started with plus the time it takes to stop after the drain
(:data:`finsa.lifecycle.EXIT_ALLOWANCE_S`), and systemd signals the main process only."""

from __future__ import annotations

import re

import pytest

from finsa.lifecycle import EXIT_ALLOWANCE_S
from tests.conftest import REPO
from tests.deploy.helpers import K8S, load_yaml_all

UNITS = sorted((REPO / "deploy" / "systemd").glob("finsa-*.service"))
DEFAULT_DRAIN_S = {"worker": 20.0, "collect": 10.0, "web": 10.0}


def _drain_s(text: str, role: str) -> float:
    """The drain bound a command line (or environment) sets, else the role's default."""
    found = re.search(r"--drain-timeout[\"',\s=]+\"?(\d+(?:\.\d+)?)", text) or re.search(
        r"FINSA_DRAIN_TIMEOUT_S[=:,\s]+(?:value:\s*)?\"?(\d+(?:\.\d+)?)", text)
    return float(found.group(1)) if found else DEFAULT_DRAIN_S[role]


def _role(text: str) -> str:
    return "web" if "finsa_web" in text or "finsa-web" in text else "collect" if "collect" in text else "worker"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_systemd_stop_timeout_exceeds_the_drain(unit) -> None:
    text = unit.read_text()
    timeout = re.search(r"^TimeoutStopSec=(\d+)s?$", text, re.M)
    assert timeout, "no TimeoutStopSec"
    assert float(timeout.group(1)) > _drain_s(text, _role(text)) + EXIT_ALLOWANCE_S
    assert re.search(r"^KillMode=mixed$", text, re.M) and re.search(r"^KillSignal=SIGTERM$", text, re.M)


def _pod_specs() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml_all(path):
            if doc and doc.get("kind") in ("Deployment", "DaemonSet", "StatefulSet"):
                out.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
    return out


@pytest.mark.parametrize("name,spec", _pod_specs(), ids=lambda v: v if isinstance(v, str) else "")
def test_kubernetes_grace_period_exceeds_the_drain(name: str, spec: dict) -> None:
    container = spec["containers"][0]
    text = " ".join(map(str, container.get("args", []))) + " " + " ".join(
        f"{e['name']}={e.get('value', '')}" for e in container.get("env", []))
    role = "web" if "web" in name else "collect" if "collector" in name else "worker"
    assert spec.get("terminationGracePeriodSeconds", 30) > _drain_s(text, role) + EXIT_ALLOWANCE_S


def test_the_parser_reads_what_the_files_say() -> None:
    assert _drain_s("ExecStart=finsa worker --drain-timeout 45", "worker") == 45
    assert _drain_s("FINSA_DRAIN_TIMEOUT_S=7", "web") == 7 and _drain_s("", "collect") == 10
