"""Ring blocks and BPF programs without a kernel: synthetic TPACKET_V3 blocks, program forms."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from finsa.collectors.live.bpf import accept_all, cap_snaplen, compile_filter, instructions, parse_program
from finsa.collectors.live.capture import LiveCapture, _is_expression
from finsa.collectors.live.ring import TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, parse_block
from finsa.errors import CaptureError
from finsa.metrics import REGISTRY

_MAC_OFFSET = 82  # as the kernel lays it out: header, sockaddr_ll, alignment so the IP header is aligned


def make_block(packets: list[dict], first: int = 48, align: int = 8) -> bytes:
    """A retired block like the kernel writes: descriptor, then chained tpacket3_hdr + frame."""
    body = bytearray()
    for i, p in enumerate(packets):
        frame = p["frame"]
        size = (_MAC_OFFSET + len(frame) + align - 1) // align * align
        nxt = 0 if i == len(packets) - 1 else size
        hdr = struct.pack("<6I2H3I", nxt, p["sec"], p["nsec"], len(frame), p.get("wire", len(frame)),
                          p.get("status", TP_STATUS_USER), _MAC_OFFSET, _MAC_OFFSET + 14,
                          0, p.get("tci", 0), p.get("tpid", 0))
        body += (hdr + bytes(_MAC_OFFSET - len(hdr)) + frame).ljust(size, b"\xee")
    desc = struct.pack("<6I", 1, 0, TP_STATUS_USER, len(packets), first, first + len(body))
    return desc.ljust(first, b"\0") + bytes(body)


def _frame(n: int, ethertype: int = 0x0800) -> bytes:
    return bytes.fromhex("020000000002020000000001") + ethertype.to_bytes(2, "big") + bytes(range(n % 256)) * 1


def test_parse_block_reads_every_packet_in_chain_order():
    frames = [_frame(40 + 7 * i) for i in range(50)]
    block = make_block([{"frame": f, "sec": 1_700_000_000 + i, "nsec": 999 * i, "wire": len(f) + i}
                        for i, f in enumerate(frames)])
    b = parse_block(block, linktype=1)
    assert len(b) == 50
    assert [b.packet(i) for i in range(50)] == frames
    assert b.ts_ns.tolist() == [(1_700_000_000 + i) * 10**9 + 999 * i for i in range(50)]
    assert b.wirelen.tolist() == [len(f) + i for i, f in enumerate(frames)]
    assert b.linktype.dtype == np.uint16 and set(b.linktype.tolist()) == {1}


@pytest.mark.parametrize("align", [8, 16])
def test_chain_is_found_vectorised_or_walked_with_the_same_result(align):
    walks = REGISTRY.get("finsa_capture_block_walks_total")
    before = {m: walks.value(method=m) for m in ("vectorised", "loop")}
    frames = [_frame(40 + 13 * i) for i in range(300)]
    b = parse_block(make_block([{"frame": f, "sec": 1, "nsec": i} for i, f in enumerate(frames)], align=align),
                    linktype=1)
    assert [b.packet(i) for i in range(300)] == frames
    used = "vectorised" if align == 8 else "loop"  # the kernel aligns to 8; other layouts take the loop
    assert walks.value(method=used) == before[used] + 1


def test_payloads_that_look_like_packet_headers_do_not_fool_the_chain():
    fake = struct.pack("<6I2H3I", 0, 1, 2, 10, 10, 1, 48, 62, 0, 0, 0)  # a header-like payload ...
    frames = [_frame(20) + bytes(2) + fake * 5 + bytes(k) for k in range(40)]
    b = parse_block(make_block([{"frame": f, "sec": 1, "nsec": i} for i, f in enumerate(frames)]), linktype=1)
    assert [b.packet(i) for i in range(40)] == frames


def test_parse_block_puts_stripped_vlan_tags_back():
    plain, tagged = _frame(46), _frame(46)
    qinq = _frame(30, 0x86DD)
    block = make_block([
        {"frame": plain, "sec": 1, "nsec": 0},
        {"frame": tagged, "sec": 2, "nsec": 0, "status": TP_STATUS_USER | TP_STATUS_VLAN_VALID, "tci": 0x202A},
        {"frame": qinq, "sec": 3, "nsec": 0, "tci": 7, "tpid": 0x88A8,
         "status": TP_STATUS_USER | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID},
    ])
    b = parse_block(block, linktype=1)
    assert b.packet(0) == plain
    assert b.packet(1) == tagged[:12] + bytes.fromhex("8100202a") + tagged[12:]
    assert b.packet(2) == qinq[:12] + bytes.fromhex("88a80007") + qinq[12:]
    assert b.caplen.tolist() == [len(plain), len(tagged) + 4, len(qinq) + 4]
    assert b.wirelen.tolist() == b.caplen.tolist()


def test_vlan_tags_are_left_alone_on_raw_ip_links():
    frame = bytes.fromhex("4500001c") + bytes(24)
    block = make_block([{"frame": frame, "sec": 1, "nsec": 0, "tci": 5,
                         "status": TP_STATUS_USER | TP_STATUS_VLAN_VALID}])
    assert parse_block(block, linktype=101).packet(0) == frame


def test_empty_block_gives_an_empty_batch():
    b = parse_block(make_block([]), linktype=1)
    assert len(b) == 0 and len(b.offset) == 0


def test_program_forms_agree():
    ddd = "4,40 0 0 12,21 0 1 2048,6 0 0 262144,6 0 0 0"
    dd = """{ 0x28, 0, 0, 0x0000000c },\n{ 0x15, 0, 1, 0x00000800 },\n{ 0x6, 0, 0, 0x00040000 },
{ 0x6, 0, 0, 0x00000000 },"""
    tuples = [(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (6, 0, 0, 262144), (6, 0, 0, 0)]
    packed = parse_program(tuples)
    assert parse_program(ddd) == parse_program(dd) == parse_program(packed) == packed
    assert instructions(cap_snaplen(packed, 128))[2:] == [(6, 0, 0, 128), (6, 0, 0, 0)]


@pytest.mark.parametrize("bad", ["3,6 0 0 1", "", b"1234567", [], "2,6 0 0,6 0 0 0"])
def test_malformed_programs_are_refused(bad):
    with pytest.raises(CaptureError):
        parse_program(bad)


def test_compile_filter_uses_libpcap_or_tcpdump():
    try:
        prog = compile_filter("udp port 53", snaplen=200)
    except CaptureError as exc:
        pytest.skip(str(exc))
    insns = instructions(prog)
    assert len(insns) > 3
    assert {k for c, _, _, k in insns if c == 6} == {0, 200}
    with pytest.raises(CaptureError, match="bad capture filter"):
        compile_filter("udp prot 53")


def test_expression_or_program_text():
    assert _is_expression("tcp port 80") and _is_expression("host 10.0.0.1")
    assert not _is_expression("1,6 0 0 65535") and not _is_expression("{ 0x6, 0, 0, 0x1 },")
    assert not _is_expression(accept_all(64)) and not _is_expression(None)


@pytest.mark.parametrize("kwargs, reason", [
    ({"interface": ""}, "not an interface name"),
    ({"interface": "x" * 16}, "not an interface name"),
    ({"block_size": 1000}, "block_size"),
    ({"block_count": 0}, "block_count"),
    ({"fanout_group": 70000}, "fanout_group"),
    ({"snaplen": 10}, "snaplen"),
    ({"block_timeout_ms": 0}, "block_timeout_ms"),
])
def test_bad_settings_are_refused_by_the_constructor(kwargs, reason):
    args = {"interface": "eth0", **kwargs}
    with pytest.raises(CaptureError, match=reason):
        LiveCapture(**args)


def test_constructor_is_inert_and_batches_need_start():
    cap = LiveCapture("does-not-exist0", bpf="1,6 0 0 65535")
    assert not cap.running and cap.ring_bytes == (1 << 22) * 64
    with pytest.raises(CaptureError, match="before start"):
        next(cap.batches())
    cap.stop()  # stopping a capture never started is harmless
