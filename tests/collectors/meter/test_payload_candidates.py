"""The payload prefilter drops no packet a parser would use, and repeated payloads are grouped exactly."""

from __future__ import annotations

import numpy as np
import pytest

from finsa.collectors.meter.app_hints import packet_hints
from finsa.collectors.meter.decode import decode_packets
from finsa.collectors.meter.keyed_rows import key_hashes
from finsa.collectors.meter.payload_candidates import candidate_rows
from finsa.collectors.meter.payload_marks import packet_items
from finsa.collectors.meter.same_payloads import WIDTH_BYTES, distinct_payloads
from finsa.collectors.pcap.capture import read_capture
from tests.conftest import shared_data

# captures whose packets carry every kind of payload fact: SMB exploits, a shell, ICMP tunnels,
# a PE download, many DNS questions, HTTP, RDP, TLS
CAPTURES = [("attacks/testmynids-shadowbrokers", "eternalblue-success-win7.pcap"),
            ("attacks/ppa-1e", "blaster-worm-shell.pcap"), ("attacks/ppa-1e", "icmp-covert-channel.pcap"),
            ("attacks/honeynet", "honeynet-2010-1-attack-trace.pcap"), ("attacks/dmachard-dns", "iodine.pcap"),
            ("attacks/chrissanders-packets", "aurora-ie-exploit.pcapng"), ("benign/zeek", "rdp_rdp-proprietary-encryption.pcap"),
            ("benign/zeek", "http_get.pcap")]


def _hints_as_rows(h) -> list:
    if h is None:
        return []
    return sorted((int(r), name, repr(col[i])) for name, col in h.values.items() for i, r in enumerate(h.rows))


@pytest.mark.parametrize("sub,name", CAPTURES)
def test_parsers_on_candidates_find_what_they_find_on_every_packet(sub: str, name: str) -> None:
    for batch in read_capture(shared_data(sub) / name, chunk_packets=4096):
        decoded = decode_packets(batch)
        if not len(decoded):
            continue
        hashes, dir_lo = key_hashes(decoded, False)
        tried = np.zeros(len(decoded), dtype=np.int64)
        rows, packed = candidate_rows(batch.data, decoded)
        sub_dec = decoded.take(rows)
        sub_dec.payload_head = packed

        every = packet_items(batch.data, decoded, hashes, tried)
        some = packet_items(batch.data, sub_dec, hashes[rows], tried[rows])
        if every is None:
            assert some is None
        else:
            assert some is not None and some[1] == every[1] and rows[some[0]].tolist() == every[0].tolist()

        whole = packet_hints(batch, decoded, hashes * np.uint64(2) + dir_lo, dir_lo, tried)
        part = packet_hints(batch, sub_dec, hashes[rows] * np.uint64(2) + dir_lo[rows], dir_lo[rows], tried[rows])
        if part is not None:
            part.rows = rows[part.rows]
        assert _hints_as_rows(part) == _hints_as_rows(whole)


def test_repeated_payloads_are_grouped_only_when_equal() -> None:
    msgs = [b"\x00\x01same", b"\x00\x02same", b"\x00\x03samf", b"\x00\x04sam", b"\x00\x05" + b"x" * WIDTH_BYTES,
            b"\x00\x06" + b"x" * WIDTH_BYTES, b"\x00\x07same"]
    data = b"".join(msgs)
    ends = np.cumsum([len(m) for m in msgs])
    starts = ends - [len(m) for m in msgs]
    firsts, groups = distinct_payloads(data, starts, ends, skip=2)
    assert groups.tolist() == [0, 0, 1, 2, 3, 4, 0]  # the ID is skipped; longer than the width: alone
    assert firsts.tolist() == [0, 2, 3, 4, 5]
    _, exact = distinct_payloads(data, starts, ends, skip=0)
    assert len(set(exact.tolist())) == len(msgs)
