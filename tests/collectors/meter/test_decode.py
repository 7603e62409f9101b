"""decode_packets: layers, VLAN stacks, fragments, ICMP, tunnels and skipped-packet reasons."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN

from finsa.collectors.meter.decode import SKIPPED, decode_packets
from finsa.collectors.pcap.capture import PacketBatch
from finsa.wire import ips_to_strings


def _decode(*frames, linktype: int = 1):
    batch = PacketBatch.from_packets([(i, bytes(f)) for i, f in enumerate(frames)], linktype=linktype)
    return decode_packets(batch)


def test_tcp_over_ethernet_fields() -> None:
    d = _decode(Ether() / IP(src="10.0.0.1", dst="192.0.2.9") / TCP(sport=40000, dport=443, flags="SA") / b"hello")
    assert len(d) == 1
    assert ips_to_strings(d.src_ip) == ["10.0.0.1"] and ips_to_strings(d.dst_ip) == ["192.0.2.9"]
    assert (int(d.ip_version[0]), int(d.protocol[0]), int(d.src_port[0]), int(d.dst_port[0])) == (4, 6, 40000, 443)
    assert int(d.tcp_flags[0]) == 0x12 and int(d.payload_bytes[0]) == 5 and int(d.ip_bytes[0]) == 45


def test_vlan_and_qinq_keep_innermost_id() -> None:
    d = _decode(Ether() / Dot1Q(vlan=100) / IP() / UDP(),
                Ether() / Dot1Q(vlan=10) / Dot1Q(vlan=20) / IP() / UDP(sport=1, dport=2))
    assert d.vlan_id.tolist() == [100, 20]
    assert d.dst_port.tolist() == [53, 2]


def test_icmp_type_and_code_in_port_columns() -> None:
    d = _decode(Ether() / IP() / ICMP(type=3, code=1), Ether() / IPv6() / b"\x80\x00\x00\x00")
    assert d.src_port.tolist()[0] == 3 and d.dst_port.tolist()[0] == 1
    assert d.protocol.tolist() == [1, 59]


def test_ipv4_and_ipv6_fragments() -> None:
    first = Ether() / IP(flags="MF", frag=0, proto=17) / UDP(sport=53, dport=999) / (b"x" * 32)
    later = Ether() / IP(frag=5, proto=17) / (b"y" * 20)
    v6_first = Ether() / IPv6() / IPv6ExtHdrFragment(offset=0, m=1, nh=17) / UDP(sport=53, dport=999)
    v6_later = Ether() / IPv6() / IPv6ExtHdrFragment(offset=100, m=0, nh=17) / (b"z" * 16)
    d = _decode(first, later, v6_first, v6_later)
    assert d.fragment.tolist() == [1, 2, 1, 2]
    assert d.src_port.tolist() == [53, 0, 53, 0]
    assert d.protocol.tolist() == [17, 17, 17, 17]


def test_tunnels_decode_to_the_inner_flow() -> None:
    inner6 = IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1000, dport=80)
    d = _decode(Ether() / IP(proto=41) / inner6,
                Ether() / IP() / GRE() / IP(src="172.16.0.1", dst="172.16.0.2") / UDP(sport=7, dport=9),
                Ether() / IP() / UDP(sport=5555, dport=4789) / VXLAN(vni=42) / Ether() / IP(src="10.9.9.9") / TCP(),
                Ether() / IP() / UDP(sport=2152, dport=2152) / (bytes.fromhex("30ff003000000001")
                                                                + bytes(IP(src="100.64.0.1") / UDP(sport=1, dport=2) / (b"q" * 20))))
    assert d.tunnel_kind.tolist() == [3, 1, 2, 4]
    assert d.ip_version.tolist() == [6, 4, 4, 4]
    assert ips_to_strings(d.src_ip) == ["2001:db8::1", "172.16.0.1", "10.9.9.9", "100.64.0.1"]


def test_link_types_sll_raw_pppoe() -> None:
    assert len(_decode(CookedLinux(proto=0x0800) / IP() / UDP(), linktype=113)) == 1
    assert len(_decode(IP() / UDP(), linktype=101)) == 1
    assert len(_decode(IPv6() / UDP(), linktype=229)) == 1
    d = _decode(Ether() / PPPoE() / PPP(proto=0x0057) / IPv6() / UDP(sport=546, dport=547))
    assert d.ip_version.tolist() == [6] and d.dst_port.tolist() == [547]


def test_skipped_reasons_are_counted_never_raised() -> None:
    before = {r: SKIPPED.value(reason=r) for r in ("truncated", "non_ip", "bad_ip_header", "unsupported_link")}
    frames = [b"\x00" * 10,  # shorter than Ethernet
              bytes(Ether(type=0x0806) / (b"\0" * 28)),  # ARP
              bytes(Ether() / IP() / TCP())[:40],  # TCP header cut
              bytes(Ether(type=0x0800)) + bytes.fromhex("46") + bytes(19),  # ihl 6, options cut
              bytes(Ether(type=0x0800)) + bytes.fromhex("4300") + bytes(18)]  # ihl 3
    d = _decode(*frames)
    assert len(d) == 0
    assert d.skipped == {"truncated": 3, "non_ip": 1, "bad_ip_header": 1}
    assert SKIPPED.value(reason="truncated") - before["truncated"] == 3
    assert _decode(b"\x00" * 40, linktype=147).skipped == {"unsupported_link": 1}


def test_empty_batch() -> None:
    d = decode_packets(PacketBatch.from_packets([]))
    assert len(d) == 0 and d.skipped == {}


@pytest.mark.parametrize("cut", range(0, 60, 3))
def test_every_truncation_of_a_frame_is_counted(cut: int) -> None:
    frame = bytes(Ether() / Dot1Q(vlan=5) / IPv6() / TCP() / b"data")
    d = _decode(frame[:cut])
    assert len(d) + sum(d.skipped.values()) == 1
    assert np.all(d.payload_bytes >= 0)


def test_sll2_and_bsd_loopback() -> None:
    sll2 = bytes.fromhex("0800 0000 00000002 0001 00 06 001122334455 0000")
    d = _decode(sll2 + bytes(IP(src="10.1.1.1") / UDP()), linktype=276)
    assert ips_to_strings(d.src_ip) == ["10.1.1.1"]
    loop = (2).to_bytes(4, "little") + bytes(IP(src="10.2.2.2") / UDP())
    assert ips_to_strings(_decode(loop, linktype=0).src_ip) == ["10.2.2.2"]
