"""FlowMeter: keys, directions, timeouts inside and across chunks, TCP ends, expiry, stats."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from finsa.collectors.meter.flowmeter import FLOWS, PACKETS, FlowMeter
from finsa.collectors.pcap.capture import PacketBatch
from finsa.wire import FLOW, RecordBatch

S = 1_000_000_000  # ns per second
A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def tcp(src: str, dst: str, sport: int, dport: int, flags: str = "A", payload: bytes = b"", vlan: int = 0) -> bytes:
    l2 = Ether() / Dot1Q(vlan=vlan) if vlan else Ether()
    return bytes(l2 / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload)


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x") -> bytes:
    return bytes(Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def batch(*packets: tuple[float, bytes]) -> PacketBatch:
    return PacketBatch.from_packets([(int(t * S), frame) for t, frame in packets])


def run(meter: FlowMeter, *chunks: PacketBatch) -> list[dict]:
    out = [meter.add(c) for c in chunks] + [meter.flush()]
    batches = [b for b in out if b is not None]
    rows = RecordBatch.concat(batches).rows() if batches else []
    return sorted(rows, key=lambda r: (r["first_seen_ms"], r["src_port"]))


def test_both_directions_make_one_flow_oriented_by_the_first_packet() -> None:
    rows = run(FlowMeter("nfstream"), batch((0, tcp(B, A, 80, 5000, "SA")), (0.1, tcp(A, B, 5000, 80, "A", b"hi")),
                                           (0.2, tcp(B, A, 80, 5000, "PA", b"resp"))))
    [f] = rows
    assert (f["src_ip"], f["src_port"], f["dst_ip"], f["dst_port"]) == (B, 80, A, 5000)
    assert (f["src2dst_packets"], f["dst2src_packets"]) == (2, 1)
    assert f["src2dst_tcp_flags"] == 0x12 | 0x18 and f["dst2src_tcp_flags"] == 0x10
    assert f["src2dst_bytes"] == 54 + 58 and f["dst2src_bytes"] == 56  # on-wire lengths
    assert (f["first_seen_ms"], f["last_seen_ms"], f["end_reason"]) == (0, 200, 4)


def test_ip_level_bytes_in_zeek_and_agent_profiles() -> None:
    for profile in ("zeek", "agent"):
        [f] = run(FlowMeter(profile), batch((0, udp(A, B, 1, 2, b"abcd"))))
        assert f["src2dst_bytes"] == 20 + 8 + 4


def test_idle_split_inside_one_chunk_and_across_chunks() -> None:
    pkts = [(0, udp(A, B, 1, 2)), (119.9, udp(B, A, 2, 1)), (239.9, udp(A, B, 1, 2)), (240, udp(A, B, 1, 2))]
    one = run(FlowMeter("nfstream"), batch(*pkts))
    many = run(FlowMeter("nfstream"), *[batch(p) for p in pkts])
    for rows in (one, many):
        assert [(r["src2dst_packets"] + r["dst2src_packets"], r["end_reason"]) for r in rows] == [(2, 0), (2, 4)]


def test_idle_timeout_is_inclusive() -> None:
    rows = run(FlowMeter("nfstream", idle_timeout_ms=1000), batch((0, udp(A, B, 1, 2)), (1.0, udp(A, B, 1, 2))))
    assert len(rows) == 2


def test_active_timeout_splits_a_busy_flow() -> None:
    pkts = [(t, udp(A, B, 1, 2)) for t in np.arange(0, 25, 1.0)]
    rows = run(FlowMeter("nfstream", active_timeout_ms=10_000), batch(*pkts))
    assert [r["src2dst_packets"] for r in rows] == [10, 10, 5]
    assert [r["end_reason"] for r in rows] == [1, 1, 4]


def test_vlan_is_part_of_the_key() -> None:
    rows = run(FlowMeter("nfstream"), batch((0, tcp(A, B, 1, 2, vlan=5)), (1, tcp(B, A, 2, 1, vlan=6))))
    assert sorted(r["vlan_id"] for r in rows) == [5, 6]


def _handshake_and_close(t0: float, sport: int, close: str) -> list[tuple[float, bytes]]:
    pk = [(t0, tcp(A, B, sport, 80, "S")), (t0 + 0.1, tcp(B, A, 80, sport, "SA")), (t0 + 0.2, tcp(A, B, sport, 80, "A"))]
    if close == "fin":
        pk += [(t0 + 0.3, tcp(A, B, sport, 80, "FA")), (t0 + 0.4, tcp(B, A, 80, sport, "FA")),
               (t0 + 0.5, tcp(A, B, sport, 80, "A"))]
    else:
        pk += [(t0 + 0.3, tcp(B, A, 80, sport, "R"))]
    return pk


@pytest.mark.parametrize("profile", ["zeek", "agent"])
def test_tcp_ends_on_fin_and_rst_and_a_new_syn_starts_a_new_flow(profile: str) -> None:
    pkts = _handshake_and_close(0, 4000, "fin") + _handshake_and_close(1, 4000, "rst") + _handshake_and_close(2, 4000, "fin")
    for chunks in ([batch(*pkts)], [batch(p) for p in pkts]):
        rows = run(FlowMeter(profile), *chunks)
        assert [r["src2dst_packets"] + r["dst2src_packets"] for r in rows] == [6, 4, 6]
        assert [r["end_reason"] for r in rows][:2] == [2, 3]


def test_nfstream_profile_does_not_end_on_fin() -> None:
    pkts = _handshake_and_close(0, 4000, "fin") + _handshake_and_close(1, 4000, "fin")
    assert len(run(FlowMeter("nfstream"), batch(*pkts))) == 1


def test_closed_flow_expires_after_the_linger() -> None:
    meter = FlowMeter("zeek")
    assert meter.add(batch(*_handshake_and_close(0, 4000, "fin"))) is None
    assert meter.expire(meter.clock_ms + 1000) is None
    out = meter.expire(meter.clock_ms + 5000)
    assert out is not None and out.rows()[0]["end_reason"] == 2


def test_agent_unanswered_syn_expires_after_five_seconds() -> None:
    meter = FlowMeter("agent")
    meter.add(batch((0, tcp(A, B, 1, 22, "S")), (0, tcp(A, C, 1, 22, "S")), (0.5, tcp(C, A, 22, 1, "SA"))))
    assert meter.clock_ms == 500
    out = meter.expire(5000)
    assert [r["dst_ip"] for r in out.rows()] == [B]
    assert meter.expire(14_000) is None and len(meter.expire(15_500)) == 1


def test_expire_at_the_shortest_timeout_of_each_kind() -> None:
    """A sweep exports a flow exactly when its own timeout is reached: the UDP timeout below
    the TCP one, and the active timeout of a flow that is not idle."""
    meter = FlowMeter("zeek")  # TCP idle 300 s, other protocols 60 s
    meter.add(batch((0, udp(A, B, 1, 2)), (0, tcp(A, C, 1, 80))))
    assert meter.expire(59_999) is None
    assert [r["protocol"] for r in meter.expire(60_000).rows()] == [17]
    assert meter.expire(299_999) is None and len(meter.expire(300_000)) == 1
    busy = FlowMeter("nfstream", idle_timeout_ms=100_000, active_timeout_ms=10_000)
    busy.add(batch((0, udp(A, B, 1, 2)), (9.9, udp(A, B, 1, 2))))
    assert busy.expire(9_999) is None
    assert busy.expire(10_000).rows()[0]["end_reason"] == 1


def test_expire_and_flush_empty_the_table() -> None:
    meter = FlowMeter("agent", idle_timeout_ms=2000)
    assert meter.expire(0) is None and meter.flush() is None
    meter.add(batch((0, udp(A, B, 1, 2)), (1, udp(A, C, 1, 2))))
    assert len(meter.expire(2500)) == 1
    left = meter.flush()
    assert len(left) == 1 and left.columns["end_reason"].tolist() == [4]
    assert meter.flush() is None and len(meter.table) == 0


def test_add_sweeps_idle_flows_while_traffic_continues() -> None:
    meter = FlowMeter("agent")
    meter.add(batch((0, udp(A, B, 1, 2))))
    out = meter.add(batch((20, udp(A, C, 3, 4))))
    assert out is not None and [r["dst_ip"] for r in out.rows()] == [B]


def test_time_goes_forward_only() -> None:
    rows = run(FlowMeter("nfstream"), batch((10, udp(A, B, 1, 2)), (5, udp(A, B, 1, 2)), (4, udp(B, C, 1, 2))))
    assert [(r["first_seen_ms"], r["last_seen_ms"]) for r in rows] == [(10_000, 10_000), (10_000, 10_000)]


def test_non_first_fragments_are_in_no_flow_and_counted() -> None:
    frag = bytes(Ether() / IP(src=A, dst=B, frag=10, proto=17) / (b"z" * 30))
    meter = FlowMeter("nfstream")
    rows = run(meter, batch((0, udp(A, B, 1, 2)), (0.1, frag)))
    assert len(rows) == 1 and rows[0]["src2dst_packets"] == 1
    assert meter.stats["skipped"] == {"non_first_fragment": 1}


def test_stats_metrics_and_flow_ids() -> None:
    packets_before, flows_before = PACKETS.total(), FLOWS.total()
    meter = FlowMeter("nfstream", institution_id="bank-a", sensor_id="s1")
    rows = run(meter, batch(*[(i, udp(A, B, 1000 + i, 53)) for i in range(50)], (60, b"junk")))
    assert meter.stats["packets"] == 51 and meter.stats["flows"] == 50
    assert meter.stats["skipped"] == {"truncated": 1}
    assert PACKETS.total() - packets_before == 51 and FLOWS.total() - flows_before == 50
    assert len({r["flow_id"] for r in rows}) == 50
    assert {(r["institution_id"], r["sensor_id"]) for r in rows} == {("bank-a", "s1")}
    other = run(FlowMeter("nfstream", institution_id="bank-a", sensor_id="s2"), batch((0, udp(A, B, 1000, 53))))
    assert other[0]["flow_id"] != rows[0]["flow_id"]


def test_output_is_a_flow_batch_with_every_column() -> None:
    out = FlowMeter().flush()
    assert out is None
    meter = FlowMeter()
    meter.add(batch((0, udp(A, B, 1, 2))))
    out = meter.flush()
    assert out.type is FLOW and set(out.columns) == set(FLOW.names)


def _random_traffic(draw_seed: int, n: int) -> list[tuple[float, bytes]]:
    rng = np.random.default_rng(draw_seed)
    hosts = [A, B, C]
    times = np.cumsum(rng.choice([0.01, 1.0, 30.0, 130.0], size=n, p=[0.6, 0.25, 0.1, 0.05]))
    out = []
    for t in times:
        s, d = rng.choice(3, 2, replace=False)
        sp, dp = int(rng.choice([1, 2])), int(rng.choice([1, 2]))
        if rng.random() < 0.5:
            flags = str(rng.choice(["S", "SA", "A", "FA", "R", "PA"]))
            out.append((float(t), tcp(hosts[s], hosts[d], sp, dp, flags)))
        else:
            out.append((float(t), udp(hosts[s], hosts[d], sp, dp)))
    return out


def _summary(rows: list[dict]) -> collections.Counter:
    return collections.Counter((r["src_ip"], r["dst_ip"], r["src_port"], r["dst_port"], r["protocol"],
                                r["first_seen_ms"], r["last_seen_ms"], r["src2dst_packets"], r["dst2src_packets"],
                                r["src2dst_bytes"], r["src2dst_tcp_flags"], r["end_reason"] if r["end_reason"] != 4 else -1)
                               for r in rows)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), chunk=st.integers(1, 40), profile=st.sampled_from(["nfstream", "zeek", "agent"]))
def test_chunking_never_changes_the_flows(seed: int, chunk: int, profile: str) -> None:
    pkts = _random_traffic(seed, 80)
    whole = run(FlowMeter(profile, active_timeout_ms=200_000), batch(*pkts))
    pieces = [batch(*pkts[i:i + chunk]) for i in range(0, len(pkts), chunk)]
    chunked = run(FlowMeter(profile, active_timeout_ms=200_000), *pieces)
    assert sum(r["src2dst_packets"] + r["dst2src_packets"] for r in whole) == 80
    # flows swept by expiry mid-stream and flows cut on arrival are the same flows
    assert _summary(whole) == _summary(chunked)


def test_empty_and_all_skipped_batches() -> None:
    meter = FlowMeter()
    assert meter.add(PacketBatch.from_packets([])) is None
    assert meter.add(batch((1, b"\x00" * 5))) is None
    assert meter.clock_ms == 0 and meter.stats["packets"] == 1 and meter.flush() is None


def test_a_flow_reusing_a_hinted_flows_slot_gets_no_stale_hints() -> None:
    query = bytes.fromhex("1234 0100 0001 0000 0000 0000 0462616e6b 026578 00 0001 0001")
    first = batch((0, udp(A, B, 5000, 53, query)))
    later = batch((200, udp(A, B, 5000, 53, b"short")))  # same key after the idle timeout, no hint
    for chunks in ((first, later), (batch((0, udp(A, B, 5000, 53, query)), (200, udp(A, B, 5000, 53, b"short"))),)):
        meter = FlowMeter("nfstream")
        ended = [meter.add(c) for c in chunks]
        table = meter.table  # the slot the second flow took holds no value of the first one
        assert all(v is None for v in table.cols["dns_query"][table.live & ~table.cols["hinted"]])
        rows = RecordBatch.concat([b for b in ended + [meter.flush()] if b is not None]).rows()
        assert [(r["dns_query"], r["dns_qtype"]) for r in rows] == [("bank.ex", 1), ("", 0)]
