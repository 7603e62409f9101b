"""ARP bindings from packet batches: tags, malformed packets, probes, and a real poisoning capture."""

from __future__ import annotations

import struct

from finsa.collectors.meter.arp_bindings import ARP_SKIPPED, arp_bindings
from finsa.collectors.pcap.capture import PacketBatch, read_capture
from finsa.wire import RecordBatch, ips_to_strings
from tests.conftest import shared_data

MAC_A, MAC_B = bytes.fromhex("0025b3bf91ee"), bytes.fromhex("00260b310733")


def arp(op: int, sha: bytes, spa: str, tpa: str, tags: tuple[int, ...] = (), eth_src: bytes | None = None) -> bytes:
    header = b"\xff" * 6 + (eth_src or sha)
    for tag in tags:
        header += struct.pack(">HH", 0x8100, tag)
    body = struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + sha + bytes(map(int, spa.split("."))) \
        + bytes(6) + bytes(map(int, tpa.split(".")))
    return header + b"\x08\x06" + body


def _rows(packets: list[tuple[int, bytes]]) -> list[dict]:
    batch = arp_bindings(PacketBatch.from_packets(packets), "bank-a", "tap1")
    return [{**r, "ip": ip} for r, ip in zip(batch.rows(), ips_to_strings(batch.columns["ip"]))]


def test_bindings_are_grouped_per_vlan_address_and_mac_with_their_counts() -> None:
    rows = _rows([(1_000_000_000, arp(1, MAC_A, "10.0.0.5", "10.0.0.1")),
                  (2_000_000_000, arp(2, MAC_A, "10.0.0.5", "10.0.0.9")),
                  (3_000_000_000, arp(2, MAC_A, "10.0.0.5", "10.0.0.5")),         # gratuitous announcement
                  (4_000_000_000, arp(2, MAC_B, "10.0.0.5", "10.0.0.9", tags=(30,))),
                  (5_000_000_000, arp(2, MAC_B, "10.0.0.7", "10.0.0.9", tags=(10, 20), eth_src=MAC_A))])
    got = {(r["vlan_id"], r["ip"], r["mac"]): (r["requests"], r["replies"], r["gratuitous"], r["eth_mismatch"],
                                                r["first_seen_ms"], r["last_seen_ms"]) for r in rows}
    a, b = int.from_bytes(MAC_A, "big"), int.from_bytes(MAC_B, "big")
    assert got == {(0, "10.0.0.5", a): (1, 2, 1, 0, 1000, 3000), (30, "10.0.0.5", b): (0, 1, 0, 0, 4000, 4000),
                   (20, "10.0.0.7", b): (0, 1, 0, 1, 5000, 5000)}  # QinQ: the inner VLAN
    assert {r["institution_id"] for r in rows} == {"bank-a"} and {r["sensor_id"] for r in rows} == {"tap1"}


def test_probes_truncated_and_foreign_packets_claim_nothing() -> None:
    truncated_before = ARP_SKIPPED.value(reason="truncated")
    probe_before = ARP_SKIPPED.value(reason="probe")
    ip_packet = b"\xff" * 12 + b"\x08\x00" + bytes(40)
    rows = _rows([(1, arp(1, MAC_A, "0.0.0.0", "10.0.0.5")),         # address probe (RFC 5227)
                  (2, arp(2, MAC_A, "10.0.0.5", "10.0.0.1")[:30]),    # cut inside the ARP body
                  (3, ip_packet), (4, b"\x00" * 6)])
    assert rows == []
    assert ARP_SKIPPED.value(reason="truncated") == truncated_before + 1
    assert ARP_SKIPPED.value(reason="probe") == probe_before + 1


def test_the_real_poisoning_capture_shows_one_mac_claiming_the_gateway_and_itself() -> None:
    capture = shared_data("attacks/chrissanders-packets") / "arp-poisoning.pcapng"
    batch = RecordBatch.concat([arp_bindings(b, "lab", "tap") for b in read_capture(capture, 65536)])
    claims = {(ip, f"{mac:012x}") for ip, mac in zip(ips_to_strings(batch.columns["ip"]), batch.columns["mac"].tolist())}
    # the capture's README: the poisoner 00:25:b3:bf:91:ee answers "172.16.0.1 is-at" and announces 172.16.0.105
    assert {("172.16.0.1", "0025b3bf91ee"), ("172.16.0.105", "0025b3bf91ee")} <= claims
