"""The export receiver over UDP loopback: real datagrams in, the right flows out of the sink."""

from __future__ import annotations

import socket
import threading
import time

from finsa.collectors.export.capture import export_datagrams
from finsa.collectors.export.receiver import ExportReceiver
from finsa.wire import RecordBatch
from tests.conftest import shared_data

NFV9_ORDER = ["nfv9-options-template.pcap", "nfv9-options-data.pcap", "nfv9-template.pcap", "nfv9-data.pcap"]


class Sink:
    def __init__(self) -> None:
        self.batches: list[RecordBatch] = []
        self.lock = threading.Lock()

    def __call__(self, batch: RecordBatch) -> None:
        with self.lock:
            self.batches.append(batch)

    def rows(self) -> list[dict]:
        with self.lock:
            return [r for b in self.batches for r in b.rows()]


def _wait_for(predicate, limit_s: float = 10.0) -> None:
    end = time.monotonic() + limit_s
    while not predicate() and time.monotonic() < end:
        time.sleep(0.02)


def test_receiver_delivers_flows_of_every_protocol() -> None:
    folder = shared_data("export") / "akvorado"
    payloads = [p for name in NFV9_ORDER for _, p, _ in export_datagrams(folder / name)]
    payloads += [p for _, p, _ in export_datagrams(folder / "nfv5.pcap")]
    payloads += [p for _, p, _ in export_datagrams(folder / "sflow-raw-ipv4.pcap")]
    sink = Sink()
    receiver = ExportReceiver("127.0.0.1", 0, "bank-a", "edge-1", sink, flush_interval_s=0.2, max_rows=10)
    receiver.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for payload in payloads:
                sender.sendto(payload, receiver.address)
                time.sleep(0.005)  # keep order and stay within the socket buffer
        _wait_for(lambda: len(sink.rows()) >= 4 + 29 + 2)
    finally:
        receiver.stop()
    rows = sink.rows()
    assert len(rows) == 35 and receiver.datagrams == len(payloads)
    assert {r["institution_id"] for r in rows} == {"bank-a"} and {r["sensor_id"] for r in rows} == {"edge-1"}
    assert len({r["flow_id"] for r in rows}) == 35
    v9 = [r for r in rows if r["src2dst_packets"] == 30000]
    assert sorted(r["src2dst_bytes"] for r in v9) == [42_000_000, 43_440_000, 45_000_000, 45_000_000]
    icmp = [r for r in rows if r["protocol"] == 1]
    assert {(r["src_ip"], r["dst_ip"], r["src2dst_bytes"]) for r in icmp} == {
        ("69.58.92.107", "92.222.186.1", 32), ("69.58.92.107", "92.222.184.1", 32)}
    assert any(r["src_ip"] == "161.202.212.212" and r["dst_port"] == 11963 for r in rows)


def test_receiver_survives_a_failing_sink_and_garbage() -> None:
    calls = []

    def sink(batch: RecordBatch) -> None:
        calls.append(len(batch))
        raise RuntimeError("downstream is down")

    folder = shared_data("export") / "akvorado"
    [(_, v5, _)] = export_datagrams(folder / "nfv5.pcap")
    receiver = ExportReceiver("127.0.0.1", 0, "bank-a", "edge-1", sink, flush_interval_s=0.05)
    receiver.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"garbage", receiver.address)
            sender.sendto(v5, receiver.address)
            _wait_for(lambda: len(calls) >= 1)
            sender.sendto(v5, receiver.address)
            _wait_for(lambda: len(calls) >= 2)
    finally:
        receiver.stop()
    assert calls[:2] == [29, 29]
