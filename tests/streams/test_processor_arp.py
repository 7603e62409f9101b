"""The worker's processor takes ARP binding batches from the flow topic: it stores them, runs the
ARP detectors on them, and hands their alerts on with the flows' alerts; other records are refused."""

from __future__ import annotations

from finsa import wire
from finsa.detectors.engine import DetectionEngine
from finsa.streams.processor import FlowProcessor
from tests.fakes import MemoryStore

GATEWAY, POISONER = 0x00260B310733, 0x0025B3BF91EE


def _bindings(rows: list[tuple]) -> bytes:
    return wire.encode_batch(wire.ARP.make_batch({
        "first_seen_ms": [r[0] for r in rows], "last_seen_ms": [r[0] for r in rows], "institution_id": "bank-a",
        "sensor_id": "bank-a-tap1", "ip": [r[1] for r in rows], "mac": [r[2] for r in rows],
        "requests": [r[3] for r in rows], "replies": [r[4] for r in rows]}))


def _flows() -> bytes:
    return wire.encode_batch(wire.FLOW.make_batch({
        "institution_id": ["bank-a"], "first_seen_ms": [1_770_000_000_000], "last_seen_ms": [1_770_000_000_500],
        "src2dst_packets": [2], "src_ip": ["10.0.0.66"], "dst_ip": ["198.51.100.10"], "dst_port": [443]}))


def test_bindings_and_flows_in_one_group_are_stored_and_the_poisoner_alerted() -> None:
    store = MemoryStore()
    proc = FlowProcessor(store, DetectionEngine())
    proc.process_group([_bindings([(1_770_000_000_000, "10.0.0.1", GATEWAY, 0, 1)])])
    out = proc.process_group([_flows(), _bindings([(1_770_000_001_000, "10.0.0.1", POISONER, 0, 2),
                                                   (1_770_000_001_000, "10.0.0.66", POISONER, 1, 0)])])
    assert out.flows == 1 and out.dead == []
    assert out.alerts is not None and out.alerts.columns["detector"].tolist() == ["arpspoof"]
    kinds = [b.type.name for b in store.batches]
    assert kinds.count("arp") == 2 and kinds.count("flow") == 1
    stored_alerts = [b for b in store.batches if b.type is wire.ALERT]
    assert [b.columns["entity"].tolist() for b in stored_alerts] == [["10.0.0.66"]]  # stored once


def test_a_group_of_bindings_alone_and_a_foreign_record_type() -> None:
    store = MemoryStore()
    proc = FlowProcessor(store, DetectionEngine())
    heartbeat = wire.encode_batch(wire.HEARTBEAT.make_batch({"sensor_id": ["s1"]}))
    out = proc.process_group([_bindings([(1_770_000_000_000, "10.0.0.1", GATEWAY, 0, 1)]), heartbeat])
    assert out.flows == 0 and out.alerts is None
    assert [(i, reason) for i, reason, _ in out.dead] == [(1, "wrong_record_type")]
    assert [b.type.name for b in store.batches] == ["arp"]
