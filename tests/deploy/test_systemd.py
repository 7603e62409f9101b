"""deploy/systemd worker and web units: systemd-analyze verify clean, tight sandbox."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, need_tool

UNITS = REPO / "deploy" / "systemd"
NAMES = ["finsa-worker.service", "finsa-web.service"]


def _installed_copy(tmp_path: Path, name: str) -> Path:
    text = (UNITS / name).read_text()
    text = text.replace("/opt/finsa/libexec/finsa-worker", str(REPO / "deploy" / "docker" / "worker-entrypoint.sh"))
    text = text.replace("/opt/finsa/bin/python", sys.executable)
    unit = tmp_path / name
    unit.write_text(text)
    return unit


def _settings(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#") and not line.startswith(" "):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("name", NAMES)
def test_verify_is_clean(tmp_path, name: str) -> None:
    tool = need_tool("systemd-analyze")
    done = subprocess.run([tool, "verify", str(_installed_copy(tmp_path, name))], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stderr


@pytest.mark.parametrize("name", NAMES)
def test_exposure_is_low(tmp_path, name: str) -> None:
    tool = need_tool("systemd-analyze")
    done = subprocess.run([tool, "security", "--offline=true", str(_installed_copy(tmp_path, name))],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    if found is None:
        pytest.skip(f"this systemd-analyze has no offline security report: {done.stderr.strip()[:200]}")
    assert float(found.group(1)) <= 2.0


@pytest.mark.parametrize("name", NAMES)
def test_least_privilege(name: str) -> None:
    unit = _settings(UNITS / name)
    assert unit["CapabilityBoundingSet"] == [""] and unit["AmbientCapabilities"] == [""]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert all(c.split(":")[1].startswith("/etc/finsa/credentials/") for c in unit["LoadCredential"])
    assert "User" in unit or unit.get("DynamicUser") == ["yes"]
    assert not any("password" in v.lower() and "%d/" not in v for v in unit.get("Environment", []))


def test_worker_unit_passes_the_brief_flags() -> None:
    text = (UNITS / "finsa-worker.service").read_text()
    command = text.split("ExecStart=", 1)[1].split("\nRestart")[0]
    for flag in ("--broker", "--state-dir", "--registry", "--detectors", "--batch-keys"):
        assert flag in command
