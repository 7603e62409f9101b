"""The compiled decoder on mutated frames: every packet kept or counted, each packet decoded on
its own exactly as inside a batch (no state leaks from one packet to the next), and nothing read
for a kept packet lies outside its captured bytes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from finsa.collectors.meter.decode import ALL_TUNNELS, decode_packets
from finsa.collectors.meter.decode_loop import OUTPUTS
from finsa.collectors.pcap.capture import PacketBatch

ETH_V4_TCP = bytes(12) + b"\x08\x00" + bytes.fromhex("4500003c0000400040060000c0a80001c0a80002") \
    + bytes.fromhex("04d201bb000000000000000080120000000000000101080a00000000000000001603010200010001fc0303")
#: ethertypes that send the decoder down each of its paths: IPv4, IPv6, VLAN, QinQ, PPPoE, MPLS
ETHERTYPES = [b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\xa8", b"\x88\x64", b"\x88\x47"]
#: IPv4 protocol bytes: TCP, UDP, ICMP, IP-in-IP, 6in4, GRE, an IPv6 extension header number
PROTOCOLS = [6, 17, 1, 4, 41, 47, 44]
COLUMNS = [name for name, _ in OUTPUTS if name != "index"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(ETH_V4_TCP) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(ETH_V4_TCP)), st.sampled_from(ETHERTYPES), st.sampled_from(PROTOCOLS),
       st.sampled_from([1, 113, 276, 101, 0, 147]), st.sampled_from([ALL_TUNNELS, frozenset()]))
def test_mutated_frames(edits, cut: int, ethertype: bytes, proto: int, linktype: int, tunnels) -> None:
    frame = bytearray(ETH_V4_TCP[:12] + ethertype + ETH_V4_TCP[14:])
    frame[23] = proto
    for at, value in edits:
        frame[at] = value
    frames = [bytes(frame[:cut]), bytes(frame), ETH_V4_TCP, bytes(frame[::-1])]
    batch = PacketBatch.from_packets([(i, f) for i, f in enumerate(frames)], linktype=linktype)
    d = decode_packets(batch, tunnels)
    assert len(d) + sum(d.skipped.values()) == len(frames)
    assert np.all(np.diff(d.index) > 0)
    end = batch.offset[d.index] + batch.caplen[d.index]
    assert np.all((d.payload_bytes == 0) | (d.payload_offset + d.payload_bytes <= end))
    for row, i in enumerate(d.index.tolist()):
        alone = decode_packets(PacketBatch.from_packets([(0, frames[i])], linktype=linktype), tunnels)
        assert len(alone) == 1
        shift = int(batch.offset[i])  # positions are absolute in the batch buffer
        for name in COLUMNS:
            got, want = getattr(d, name)[row], getattr(alone, name)[0]
            if name == "payload_offset":
                want = want + shift
            assert np.array_equal(got, want), name
