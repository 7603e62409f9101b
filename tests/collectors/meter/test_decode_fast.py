"""decode_common gives exactly the general decoder's columns for every packet it decodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finsa.collectors.meter.decode import ALL_TUNNELS, _decode_general, decode_packets
from finsa.collectors.meter.decode_fast import decode_common
from finsa.collectors.pcap.capture import PacketBatch, read_capture
from tests.conftest import SHARED_DATA

NFSTREAM = SHARED_DATA / "flows" / "nfstream"
#: Captures of untagged Ethernet IPv4/IPv6 TCP and UDP: the fast path's common case (measured: it
#: takes 471 of 475 .. 2010 of 2011 of their packets; the rest are ICMP errors or the buffer's end).
PLAIN_ETHERNET = {"android", "dns_exfiltration", "google_ssl", "http_ipv6", "mongodb", "quic_interop_V", "ssh",
                  "synscan"}
COLUMNS = ("ip_version", "protocol", "src_ip", "dst_ip", "src_port", "dst_port", "vlan_id", "tcp_flags",
           "ip_bytes", "payload_offset", "payload_bytes", "fragment", "tunnel_kind")
ETH_V4_TCP = bytes(12) + b"\x08\x00" + bytes.fromhex("4500003c0000400040060000c0a80001c0a80002") \
    + bytes.fromhex("04d201bb000000000000000080120000000000000101080a00000000000000001603010200010001fc0303")


def _agree(batch: PacketBatch, tunnels: frozenset[int]) -> int:
    rows, cols = decode_common(batch.data, batch.offset, batch.caplen, batch.linktype, tunnels)
    general = _decode_general(batch, tunnels)
    if not len(rows):
        return 0
    at = np.searchsorted(general.index, rows)
    assert np.array_equal(general.index[np.minimum(at, len(general) - 1)], rows)  # general keeps them too
    for name in COLUMNS:
        assert np.array_equal(cols[name], getattr(general, name)[at]), name
    return len(rows)


@pytest.mark.parametrize("capture", sorted(NFSTREAM.glob("*.pcap*")) if NFSTREAM.is_dir() else [],
                         ids=lambda p: p.stem)
def test_real_captures(capture: Path) -> None:
    """Same columns as the general decoder on every packet the fast path takes; tunnel ports only
    send more packets to the general decoder; on plain Ethernet TCP/UDP captures the fast path
    takes (nearly) every packet, so the agreement above is not vacuous."""
    fast_tunnels = fast_plain = general = 0
    for batch in read_capture(capture):
        if len(batch.data) >= 96:
            fast_tunnels += _agree(batch, ALL_TUNNELS)
            fast_plain += _agree(batch, frozenset())
            general += len(_decode_general(batch, ALL_TUNNELS))
    assert fast_tunnels <= fast_plain <= general
    if capture.stem in PLAIN_ETHERNET:
        assert fast_plain >= 0.9 * general > 0, (fast_plain, general)


def test_vlan_tagged_and_mixed_batches_merge_in_packet_order() -> None:
    tagged = ETH_V4_TCP[:12] + b"\x81\x00\x00\x2a" + ETH_V4_TCP[12:]
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    frames = [ETH_V4_TCP, arp, tagged, ETH_V4_TCP[:40], ETH_V4_TCP] * 30
    batch = PacketBatch.from_packets([(i, f) for i, f in enumerate(frames)])
    assert _agree(batch, ALL_TUNNELS) >= 89  # the last frame is too close to the buffer end to gather
    d = decode_packets(batch)
    assert len(d) == 90 and d.index.tolist()[:4] == [0, 2, 4, 5]
    assert d.vlan_id.tolist()[:3] == [0, 42, 0] and d.skipped == {"non_ip": 30, "truncated": 30}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(ETH_V4_TCP) - 1), st.integers(0, 255)), max_size=6),
       st.integers(20, len(ETH_V4_TCP)), st.sampled_from([b"\x08\x00", b"\x86\xdd", b"\x81\x00"]))
def test_mutated_frames(edits, cut: int, ethertype: bytes) -> None:
    frame = bytearray(ETH_V4_TCP[:12] + ethertype + ETH_V4_TCP[14:])
    for at, value in edits:
        frame[at] = value
    frames = [bytes(frame[:cut]), bytes(frame), ETH_V4_TCP]
    batch = PacketBatch.from_packets([(i, f) for i, f in enumerate(frames)])
    assert _agree(batch, ALL_TUNNELS) <= len(_decode_general(batch, ALL_TUNNELS))
