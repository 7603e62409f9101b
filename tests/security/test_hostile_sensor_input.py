"""Findings 6, 10 and 11: bad sensor input costs one record, never the source.

A corrupt record length in a pcap (or block length in a pcapng) ended reading of the whole file;
now the reader counts it and resynchronises on the next plausible record. A wire header claiming
more rows than its columns hold decoded to a huge batch; now it is refused.
"""

from __future__ import annotations

import io
import struct

import pytest

from finsa import wire
from finsa.collectors.pcap.capture import read_capture
from tests.conftest import shared_data

PCAP = ("benign/nfstream", "KakaoTalk_talk.pcap")
PCAPNG = ("attacks/chrissanders-packets", "arp-poisoning.pcapng")


def _record_offsets(data: bytes) -> list[int]:
    order = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" or data[:4] == b"\x4d\x3c\xb2\xa1" else ">"
    pos, out = 24, []
    while pos + 16 <= len(data):
        out.append(pos)
        pos += 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
    return out


def _count(batches) -> tuple[int, dict]:
    packets, skipped = 0, {}
    for b in batches:
        packets += len(b)
        for k, v in b.skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    return packets, skipped


@pytest.mark.parametrize("how", ["file", "stream"])
def test_a_corrupt_pcap_record_length_costs_one_record_not_the_file(tmp_path, how) -> None:
    data = bytearray((shared_data(PCAP[0]) / PCAP[1]).read_bytes())
    total = len(_record_offsets(bytes(data)))
    at = _record_offsets(bytes(data))[3]
    struct.pack_into("<I", data, at + 8, 0xFFFFFFF0)  # record 4 claims a 4 GiB capture
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(data))
    packets, skipped = _count(read_capture(path if how == "file" else io.BytesIO(bytes(data))))
    assert skipped.get("bad_record_length") == 1
    assert total - 2 <= packets < total  # the corrupt record (and at most one neighbour) lost


def _blocks(data: bytes) -> list[tuple[int, int]]:
    pos, out = 0, []
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        out.append((pos, btype))
        pos += blen
    return out


def test_a_corrupt_pcapng_block_length_costs_one_block_not_the_file(tmp_path) -> None:
    data = bytearray((shared_data(PCAPNG[0]) / PCAPNG[1]).read_bytes())
    total, _ = _count(read_capture(io.BytesIO(bytes(data))))
    packet_blocks = [pos for pos, btype in _blocks(bytes(data)) if btype == 6]
    struct.pack_into("<I", data, packet_blocks[5] + 4, 0x7FFFFFF0)  # an absurd block length
    struct.pack_into("<I", data, packet_blocks[20] + 4, 16)  # plausible, but not the block's length
    packets, skipped = _count(read_capture(io.BytesIO(bytes(data))))
    assert skipped.get("bad_block") == 2
    assert total - 4 <= packets <= total - 2


def test_a_header_claiming_more_rows_than_its_columns_hold_is_refused() -> None:
    header = wire._HEADER.pack(wire.MAGIC, wire.CODEC_VERSION, wire.FLOW.code, 0, wire.FLOW.version, 0,
                               1_000_000, bytes(16), 0, 0, 0, bytes(4))
    assert len(header) == 48
    with pytest.raises(wire.WireFormatError) as err:
        wire.decode_batch(header)
    assert err.value.reason == "bad_header"
    empty = wire.encode_batch(wire.FLOW.make_batch({}, n_rows=0))
    assert len(wire.decode_batch(empty)) == 0
