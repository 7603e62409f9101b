"""Template refreshes (exporters resend their templates every few seconds) and the field-list
fast path: the same layout is reused, refreshes are counted, enterprise fields still parse."""

from __future__ import annotations

import struct

from finsa.collectors.export import metrics as m
from finsa.collectors.export.decoder import ExportDecoder
from finsa.collectors.export.templates import parse_templates
from tests.collectors.export.test_templates import (EXPORTER, FLOW_FIELDS, a_set, flow_record, ipfix, netflow9,
                                                    template)


def test_refreshed_template_keeps_decoding_and_is_counted_at_take() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    before = m.TEMPLATES.value(protocol="ipfix", event="refreshed")
    rec = a_set(300, flow_record(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 40000, 443))
    for _ in range(3):
        assert dec.feed(ipfix(template(300, FLOW_FIELDS), rec), EXPORTER) == 1
    batch = dec.take()
    assert len(batch) == 3 and set(batch.columns["institution_id"]) == {"bank-a"}
    assert set(batch.columns["sensor_id"]) == {"edge-1"}
    assert m.TEMPLATES.value(protocol="ipfix", event="refreshed") == before + 2


def test_changed_layout_replaces_the_template() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    dec.feed(netflow9(template(300, FLOW_FIELDS, set_id=0)), EXPORTER)
    short = [(8, 4), (12, 4), (4, 1)]
    dec.feed(netflow9(template(300, short, set_id=0)), EXPORTER)
    assert dec.feed(netflow9(a_set(300, b"\x0a\x00\x00\x01\x0a\x00\x00\x02\x11")), EXPORTER) == 1
    [row] = dec.take().rows()
    assert (row["src_ip"], row["dst_ip"], row["protocol"]) == ("10.0.0.1", "10.0.0.2", 17)


def test_enterprise_fields_take_the_slow_path_with_the_same_result() -> None:
    fields = struct.pack(">HH", 8, 4) + struct.pack(">HHI", 0x8000 | 1, 8, 29305) + struct.pack(">HH", 12, 4)
    body = struct.pack(">HH", 301, 3) + fields
    [(tid, tmpl)] = parse_templates(body, 0, len(body), 2)
    assert tid == 301 and tmpl.fields == ((8, 0, 4), (1, 29305, 8), (12, 0, 4))
    assert tmpl.dtype.names == ("e8", "r1", "e12") and tmpl.record_bytes == 16


def test_truncated_field_list_is_refused_on_both_paths() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    skipped = m.DATAGRAMS_SKIPPED.value(reason="truncated_template")
    body = struct.pack(">HH", 300, 5) + struct.pack(">HH", 8, 4)  # says 5 fields, holds 1
    dec.feed(ipfix(a_set(2, body)), EXPORTER)
    assert dec.state.domains[("ipfix", EXPORTER, 7)].templates == {}
    assert m.DATAGRAMS_SKIPPED.value(reason="truncated_template") == skipped + 1
