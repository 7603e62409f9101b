"""Onboarding a new institution into a running `finsa run`, as docs/operations.md's checklist says:
registry entry, batch-signing key, agent config; its flows reach storage without a restart."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time

import pytest

from finsa.streams.broker import free_port
from tests.collectors.agent.agent_helpers import write_config
from tests.conftest import shared_data

pytestmark = pytest.mark.integration

FINSA = [sys.executable, "-m", "finsa.app.cli"]
NEW = """
[[institution]]
id = "bank-new"
name = "Newcomer Bank"
subsector = "bank"
region = "south"
criticality = 2
networks = ["192.168.0.0/16"]
"""


def _wait_for(log, pattern: str, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{pattern!r} never appeared:\n{log.read_text()[-2000:]}")


def test_an_institution_added_to_a_running_finsa_run_has_its_flows_stored(tmp_path) -> None:
    pcap = shared_data("flows/nfstream") / "android.pcap"
    data = tmp_path / "run"
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        run = subprocess.Popen([*FINSA, "run", "--data-dir", str(data), "--for", "40", "--speed", "10",
                                "--port", str(free_port())], stdout=out, stderr=subprocess.STDOUT)
        try:
            bootstrap = _wait_for(log, r"broker \(Tansu\) on (\S+)").group(1)
            _wait_for(log, "threat view at")
            # 1. registry entry  2. batch-signing key  3. agent config (the key stays with the agent too)
            with open(data / "scenario" / "institutions.toml", "a") as registry:
                registry.write(NEW)
            key = data / "keys" / "bank-new.key"
            key.write_text(secrets.token_hex(32) + "\n")
            config = write_config(tmp_path, bootstrap, pcap=pcap, metrics="",
                                  extra=f'batch_signing_key_file = "{key}"')
            config.write_text(config.read_text().replace('"bank-a"', '"bank-new"')
                              .replace('"bank-a-tap1"', '"bank-new-tap1"'))
            agent = subprocess.run([*FINSA, "collect", "--config", str(config)], capture_output=True, text=True,
                                   timeout=120)
            assert agent.returncode == 0, agent.stderr[-2000:]
            assert run.wait(timeout=150) == 0, log.read_text()[-3000:]
        finally:
            if run.poll() is None:
                run.kill()
    query = subprocess.run([*FINSA, "query", "--data-dir", str(data), "--format", "jsonl",
                            "SELECT (SELECT count() FROM flows WHERE institution_id = 'bank-new') AS flows, "
                            "(SELECT count() FROM institutions WHERE id = 'bank-new') AS registered"],
                           capture_output=True, text=True, timeout=120, check=True)
    row = json.loads(query.stdout.splitlines()[0])
    assert row["registered"] == 1
    assert row["flows"] > 0
