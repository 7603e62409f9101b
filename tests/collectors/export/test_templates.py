"""Template handling of NetFlow v9 / IPFIX: late templates, options sampling, withdrawal, varlen."""

from __future__ import annotations

import struct

from finsa.collectors.export import metrics as m
from finsa.collectors.export.decoder import ExportDecoder, detect_protocol
from finsa.collectors.export.templates import Template, compact_varlen

EXPORTER = "192.0.2.10"
EXPORT_S = 1_700_000_000


def ipfix(*sets: bytes, domain: int = 7) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), EXPORT_S, 1, domain) + body


def netflow9(*sets: bytes, uptime_ms: int = 50_000, source_id: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIIII", 9, len(sets), uptime_ms, EXPORT_S, 1, source_id) + body


def a_set(set_id: int, body: bytes) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def template(tid: int, fields: list[tuple[int, int]], set_id: int = 2) -> bytes:
    spec = b"".join(struct.pack(">HH", e, n) for e, n in fields)
    return a_set(set_id, struct.pack(">HH", tid, len(fields)) + spec)


FLOW_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 4), (1, 4), (152, 8), (153, 8)]


def flow_record(src: bytes, dst: bytes, sport: int, dport: int, proto: int = 6, packets: int = 2,
                octets: int = 120, flags: int = 0x12, start_ms: int = 1_699_999_990_000) -> bytes:
    return src + dst + struct.pack(">HHBBIIQQ", sport, dport, proto, flags, packets, octets, start_ms,
                                   start_ms + 500)


def test_data_before_template_is_counted_then_decoded() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    misses = m.TEMPLATE_MISSES.value(protocol="ipfix")
    data = a_set(300, flow_record(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 40000, 443))
    assert dec.feed(ipfix(data), EXPORTER) == 0
    assert m.TEMPLATE_MISSES.value(protocol="ipfix") == misses + 1
    assert dec.take() is None
    assert dec.feed(ipfix(template(300, FLOW_FIELDS)), EXPORTER) == 1
    [row] = dec.take().rows()
    assert (row["src_ip"], row["dst_ip"], row["src_port"], row["dst_port"]) == ("10.0.0.1", "10.0.0.2", 40000, 443)
    assert (row["src2dst_packets"], row["src2dst_bytes"], row["src2dst_tcp_flags"]) == (2, 120, 0x12)
    assert (row["first_seen_ms"], row["last_seen_ms"]) == (1_699_999_990_000, 1_699_999_990_500)


def test_templates_are_per_exporter_and_domain() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    dec.feed(ipfix(template(300, FLOW_FIELDS), domain=1), EXPORTER)
    data = a_set(300, flow_record(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 1, 2))
    assert dec.feed(ipfix(data, domain=2), EXPORTER) == 0
    assert dec.feed(ipfix(data, domain=1), "198.51.100.1") == 0
    assert dec.feed(ipfix(data, domain=1), EXPORTER) == 1


def test_options_sampling_by_sampler_id_scales_v9_records() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    # options template 256: scope System (4 bytes); FLOW_SAMPLER_ID(48) u8, MODE(49) u8, RANDOM_INTERVAL(50) u32
    opts = struct.pack(">HHH", 256, 4, 12) + struct.pack(">HHHHHHHH", 1, 4, 48, 1, 49, 1, 50, 4)
    samplers = struct.pack(">IBBI", 0, 1, 2, 100) + struct.pack(">IBBI", 0, 2, 2, 10)
    fields = [(8, 4), (12, 4), (4, 1), (2, 4), (1, 4), (48, 1), (22, 4), (21, 4)]
    rec = b"\x0a\x00\x00\x01\x0a\x00\x00\x02" + struct.pack(">BIIBII", 17, 3, 300, 1, 40_000, 45_000)
    rec2 = b"\x0a\x00\x00\x03\x0a\x00\x00\x04" + struct.pack(">BIIBII", 17, 1, 100, 2, 49_000, 49_000)
    dg = netflow9(a_set(1, opts + b"\0\0"), a_set(256, samplers + b"\0\0"),
                  template(260, fields, set_id=0), a_set(260, rec + rec2))
    assert dec.feed(dg, EXPORTER) == 2
    rows = dec.take().rows()
    assert [(r["src2dst_packets"], r["src2dst_bytes"]) for r in rows] == [(300, 30000), (10, 1000)]
    # sysUptime 50 s at unix 1_700_000_000: a flow that started at uptime 40 s began 10 s earlier
    assert [r["first_seen_ms"] for r in rows] == [EXPORT_S * 1000 - 10_000, EXPORT_S * 1000 - 1_000]
    assert [r["last_seen_ms"] for r in rows] == [EXPORT_S * 1000 - 5_000, EXPORT_S * 1000 - 1_000]


def test_ipfix_options_packet_interval_and_space() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    opts = a_set(3, struct.pack(">HHH", 400, 3, 1) + struct.pack(">HHHHHH", 302, 4, 305, 4, 306, 4))
    data = a_set(400, struct.pack(">III", 1, 1, 49))  # 1 packet sampled, 49 skipped: 1 in 50
    dec.feed(ipfix(opts, data, template(300, FLOW_FIELDS)), EXPORTER)
    dec.feed(ipfix(a_set(300, flow_record(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 5, 6))), EXPORTER)
    [row] = dec.take().rows()
    assert (row["src2dst_packets"], row["src2dst_bytes"]) == (100, 6000)


def test_changed_refresh_then_withdrawal() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    rec = flow_record(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 1, 2)
    assert dec.feed(ipfix(template(300, FLOW_FIELDS), a_set(300, rec)), EXPORTER) == 1
    shorter = [(8, 4), (12, 4), (2, 4)]
    assert dec.feed(ipfix(template(300, shorter),
                          a_set(300, b"\x0a\x00\x00\x05\x0a\x00\x00\x06\x00\x00\x00\x07")), EXPORTER) == 1
    rows = dec.take().rows()
    assert [(r["src_ip"], r["src2dst_packets"], r["src_port"]) for r in rows] == [("10.0.0.1", 2, 1), ("10.0.0.5", 7, 0)]
    misses = m.TEMPLATE_MISSES.value(protocol="ipfix")
    withdraw = a_set(2, struct.pack(">HH", 300, 0))
    assert dec.feed(ipfix(withdraw, a_set(300, rec)), EXPORTER) == 0
    assert m.TEMPLATE_MISSES.value(protocol="ipfix") == misses + 1
    withdraw_all = a_set(2, struct.pack(">HH", 2, 0))
    dec.feed(ipfix(template(301, shorter), withdraw_all), EXPORTER)
    assert not dec.state.domains[("ipfix", EXPORTER, 7)].templates


def test_variable_length_fields_are_skipped_over() -> None:
    fields = ((8, 0, 4), (82, 0, 65535), (2, 0, 4))  # interfaceName is variable-length
    t = Template(300, fields)
    body = (b"\x0a\x00\x00\x01" + b"\x03eth" + b"\x00\x00\x00\x05"
            + b"\x0a\x00\x00\x02" + b"\xff\x00\x02ab" + b"\x00\x00\x00\x06" + b"\x00\x00")
    blob, n = compact_varlen(t, body, 0, len(body))
    assert n == 2 and len(blob) == 2 * t.dtype.itemsize
    dec = ExportDecoder("bank-a", "edge-1")
    tmpl = a_set(2, struct.pack(">HHHHHHHH", 300, 3, 8, 4, 82, 65535, 2, 4))
    assert dec.feed(ipfix(tmpl, a_set(300, body)), EXPORTER) == 2
    assert dec.take().columns["src2dst_packets"].tolist() == [5, 6]


def test_reduced_size_counters_and_icmp_type_code() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    fields = [(8, 4), (12, 4), (4, 1), (32, 2), (2, 3), (1, 6)]
    rec = b"\x0a\x00\x00\x01\x0a\x00\x00\x02" + bytes([1]) + b"\x08\x00" + b"\x01\x00\x00" + b"\x00\x00\x01\x00\x00\x00"
    assert dec.feed(ipfix(template(300, fields), a_set(300, rec)), EXPORTER) == 1
    [row] = dec.take().rows()
    assert (row["src_port"], row["dst_port"]) == (8, 0)
    assert (row["src2dst_packets"], row["src2dst_bytes"]) == (65536, 2 ** 24)


def test_malformed_sets_are_counted_by_reason() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    before = m.DATAGRAMS_SKIPPED.value(reason="bad_set_length")
    assert dec.feed(ipfix(struct.pack(">HH", 300, 900)), EXPORTER) == 0
    assert m.DATAGRAMS_SKIPPED.value(reason="bad_set_length") == before + 1
    before = m.DATAGRAMS_SKIPPED.value(reason="empty_template")
    dec.feed(ipfix(template(300, [(8, 0), (12, 0)])), EXPORTER)
    assert m.DATAGRAMS_SKIPPED.value(reason="empty_template") == before + 1
    assert dec.take() is None


def test_protocol_detection() -> None:
    assert detect_protocol(struct.pack(">HH", 5, 0)) == "netflow5"
    assert detect_protocol(struct.pack(">HH", 9, 0)) == "netflow9"
    assert detect_protocol(struct.pack(">II", 5, 2)) == "sflow"
    assert detect_protocol(struct.pack(">II", 4, 1)) is None
    assert detect_protocol(b"\x00") is None
