"""The deployment files: the example config validates, the systemd unit verifies and is tight."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finsa.collectors.agent.config import load_agent_config
from tests.conftest import REPO, need_tool

UNIT = REPO / "deploy" / "systemd" / "finsa-agent.service"
LIVE = REPO / "deploy" / "systemd" / "finsa-agent.service.d" / "live-capture.conf"


def test_example_config_is_valid(tmp_path, monkeypatch) -> None:
    (tmp_path / "pseudonym.key").write_text("ab" * 32)
    (tmp_path / "broker.password").write_text("secret")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    text = (REPO / "deploy" / "agent.example.toml").read_text().replace("/etc/finsa/sector-ca.pem", str(tmp_path / "ca.pem"))
    path = tmp_path / "agent.toml"
    path.write_text(text)
    config = load_agent_config(path)
    assert config.spool.directory == tmp_path / "state" / "spool"
    assert config.broker.client_settings()["sasl.password"] == "secret"


def _settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_is_least_privilege() -> None:
    unit = _settings(UNIT)
    assert unit["DynamicUser"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["CapabilityBoundingSet"] == [""] and unit["AmbientCapabilities"] == [""]
    assert unit["NoNewPrivileges"] == ["yes"] and "AF_PACKET" not in unit["RestrictAddressFamilies"][0]
    live = _settings(LIVE)
    assert live["CapabilityBoundingSet"][0].split() == ["CAP_NET_RAW"]  # issue 15: NET_RAW alone suffices
    assert "AF_PACKET" in live["RestrictAddressFamilies"][0]


def _installed_copy(tmp_path: Path) -> Path:
    finsa = Path(sys.executable).with_name("finsa")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/finsa/bin/finsa", str(finsa)))
    shutil.copytree(LIVE.parent, tmp_path / LIVE.parent.name)
    return unit


def test_unit_passes_systemd_analyze_verify(tmp_path) -> None:
    tool = need_tool("systemd-analyze")
    unit = _installed_copy(tmp_path)
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stderr


def test_unit_exposure_is_low(tmp_path) -> None:
    tool = need_tool("systemd-analyze")
    unit = _installed_copy(tmp_path)
    done = subprocess.run([tool, "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    if found is None:
        pytest.skip(f"this systemd-analyze has no offline security report: {done.stderr.strip()[:200]}")
    assert float(found.group(1)) <= 3.0
