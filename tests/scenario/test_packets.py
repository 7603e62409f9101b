"""Scenario building blocks: payload table, packet encoder, templates, business rhythm."""

from __future__ import annotations

import dpkt
import numpy as np

from finsa.scenario.packets import ACK, FIN, GATEWAY_MAC, PSH, SYN, Packets, encode_frames
from finsa.scenario.payloads import (PayloadTable, dns_answer, dns_query, ssh_kexinit,
                                                 tls_client_hello)
from finsa.scenario.sessions import CLIENT, SERVER, Sessions, Step, Template, instantiate
from finsa.scenario.traffic import business_weight
from finsa.scenario.world import default_world, ip, owner_mask, site_address, SITES

CLIENT_IP, SERVER_IP = ip("10.1.1.20"), ip("198.19.1.10")


def _frames(pk: Packets, table: PayloadTable, src_local, dst_local) -> list[bytes]:
    buf, offsets, lengths = encode_frames(pk, table, np.asarray(src_local), np.asarray(dst_local))
    return [bytes(buf[o:o + n]) for o, n in zip(offsets, lengths)]


def test_payload_table_deduplicates_and_sums_words() -> None:
    table = PayloadTable()
    a, b = table.add(b"\x01\x02\x03"), table.add(b"\xff\xff")
    assert table.add(b"\x01\x02\x03") == a and table.add(b"") == 0 and len(table) == 3
    assert table.filler(700) == table.filler(700) and len(table.blob(table.filler(700))) == 700
    lengths, sums = table.arrays()
    assert list(lengths[:3]) == [0, 3, 2]
    assert int(sums[a]) == 0x0102 + 0x0300 and int(sums[b]) == 0xFFFF and int(sums[0]) == 0


def test_encoded_frames_have_valid_headers_checksums_and_macs() -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    table = PayloadTable()
    payloads = [0, table.add(b"odd"), table.add(dns_query(9, "www.google.com")), table.filler(1448)]
    pk = Packets.from_columns(ts_ns=[0, 1, 2, 3], src=[CLIENT_IP, CLIENT_IP, CLIENT_IP, SERVER_IP],
                              dst=[SERVER_IP, SERVER_IP, SERVER_IP, CLIENT_IP], proto=[6, 6, 17, 6],
                              sport=[50000, 50000, 40000, 443], dport=[443, 443, 53, 50000],
                              flags=[SYN, PSH | ACK, 0, ACK], seq=[7, 8, 0, 2**32 - 1], ack=[0, 5, 0, 11],
                              opt=[1, 0, 0, 0], payload=payloads, ttl=[128, 128, 64, 50], ip_id=[1, 2, 3, 4])
    local = np.array([True, True, True, False])
    frames = _frames(pk, table, local, ~local)
    assert [len(f) for f in frames] == [60, 60, 42 + len(table.blob(payloads[2])), 54 + 1448]
    for frame in frames:
        pkt = Ether(frame)
        l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
        given = (pkt[IP].chksum, l4.chksum)
        del pkt[IP].chksum, l4.chksum
        again = Ether(bytes(pkt))
        assert given == (again[IP].chksum, (again[TCP] if TCP in again else again[UDP]).chksum)
    syn = dpkt.ethernet.Ethernet(frames[0])
    assert syn.src == bytes([2, 0, 10, 1, 1, 20]) and syn.dst == GATEWAY_MAC
    assert syn.data.len == 44 and syn.data.data.opts == bytes.fromhex("020405b4")
    assert syn.data.ttl == 128 and syn.data.data.flags == SYN
    assert dpkt.ethernet.Ethernet(frames[1]).data.len == 43  # padding is not counted in IP length
    reply = dpkt.ethernet.Ethernet(frames[3]).data.data
    assert reply.seq == 2**32 - 1 and reply.ack == 11 and len(reply.data) == 1448


def test_instantiate_numbers_sequence_and_acknowledgements() -> None:
    table = PayloadTable()
    template = Template("t", 6, (
        Step(CLIENT, SYN), Step(SERVER, SYN | ACK, gap_rtt=0.5), Step(CLIENT, ACK, gap_rtt=0.5),
        Step(CLIENT, PSH | ACK, "req"), Step(SERVER, PSH | ACK, "resp", gap_rtt=0.5),
        Step(CLIENT, FIN | ACK, gap_ms=1), Step(SERVER, FIN | ACK, gap_rtt=0.5), Step(CLIENT, ACK, gap_rtt=0.5)))
    sessions = Sessions.make(t0_ns=[1_000_000_000, 2_000_000_000], client=CLIENT_IP, server=SERVER_IP,
                             sport=[50001, 50002], dport=443, rtt_ms=20, isn_c=[100, 2**32 - 2],
                             isn_s=[5000, 7], payloads={"req": table.filler(10), "resp": table.filler(300)})
    pk = instantiate(template, sessions, np.random.default_rng(1), table.lengths())
    assert len(pk) == 16
    seq, ack = pk.seq[:8].tolist(), pk.ack[:8].tolist()
    assert seq == [100, 5000, 101, 101, 5001, 111, 5301, 112]
    assert ack == [0, 101, 5001, 5001, 111, 5301, 112, 5302]
    assert pk.seq[8 + 2] == 2**32 - 1 and pk.seq[8 + 3] == 2**32 - 1 and pk.seq[8 + 5] == 9  # wraps
    ts = pk.ts_ns[:8]
    assert ts[0] == 1_000_000_000 and np.all(np.diff(ts) >= 0) and np.all(ts % 1000 == 0)
    assert 15e6 < ts[2] - ts[0] < 25e6  # one round trip, with jitter
    assert pk.src[1] == SERVER_IP and pk.sport[1] == 443 and pk.dport[1] == 50001


def test_payload_builders_parse_with_dpkt() -> None:
    hello = dpkt.ssl.TLSHandshake(dpkt.ssl.TLSRecord(tls_client_hello("api.swift.com", "1")).data).data
    assert dict(hello.extensions)[0].endswith(b"api.swift.com")
    answer = dpkt.dns.DNS(dns_answer(3, "www.google.com", bytes([198, 19, 1, 10])))
    assert answer.qr == 1 and answer.an[0].name == "www.google.com" and answer.an[0].ip == bytes([198, 19, 1, 10])
    kex = ssh_kexinit("x", 1000)
    assert int.from_bytes(kex[:4], "big") == len(kex) - 4 and kex[5] == 20 and len(kex) % 8 == 0


def test_business_weight_follows_office_hours_and_weekends() -> None:
    monday = 1772442000000 - 9 * 3_600_000  # 2026-03-02 00:00 UTC
    hours = np.array([3, 10, 15, 22]) * 3_600_000 + monday
    night, morning, afternoon, evening = business_weight(hours)
    assert morning == afternoon == 1.0 and night < 0.2 and evening < 0.3
    saturday = business_weight(np.array([monday + 5 * 86_400_000 + 10 * 3_600_000]))[0]
    assert saturday < 0.5


def test_world_addresses_are_fictional_and_owned() -> None:
    world = default_world()
    nets = [net for inst in world.institutions for net in inst.networks]
    public = np.array([i.web for i in world.institutions] + [i.bastion for i in world.institutions], np.uint32)
    assert owner_mask(public, nets).all()
    outside = np.array([site_address(k) for k in range(len(SITES))] + [world.scanner, world.bruteforcer], np.uint32)
    assert not owner_mask(outside, nets).any()
    assert owner_mask(outside, ["198.19.0.0/16", "203.0.113.0/24"]).all()
    assert len(set(outside.tolist())) == len(outside)
