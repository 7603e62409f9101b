"""PcapWriter: files that dpkt and scapy read back, per frame and in batches."""

from __future__ import annotations

import io
import struct

import dpkt
import numpy as np
import pytest

from finsa.collectors.pcap.writer import MAGIC_NSEC, MAGIC_USEC, PcapWriter

FRAMES = [bytes(range(60)), b"\xff" * 1514, b"\x01\x02" * 40]
TS_NS = [1_772_442_000_123_456_789, 1_772_442_000_200_000_000, 1_772_442_001_000_001_999]


def _read(data: bytes, nano: bool = False) -> list[tuple[float, bytes]]:
    reader = dpkt.pcap.Reader(io.BytesIO(data))
    return [(ts, bytes(buf)) for ts, buf in reader]


def test_frames_and_timestamps_read_back_with_dpkt() -> None:
    out = io.BytesIO()
    with PcapWriter(out) as writer:
        for ts, frame in zip(TS_NS, FRAMES):
            writer.write(ts, frame)
    data = out.getvalue()
    assert struct.unpack("<I", data[:4])[0] == MAGIC_USEC
    got = _read(data)
    assert [f for _, f in got] == FRAMES
    assert [round(ts * 1e6) for ts, _ in got] == [t // 1000 for t in TS_NS]
    assert writer.packets == 3


def test_nanosecond_resolution_keeps_nanoseconds() -> None:
    out = io.BytesIO()
    with PcapWriter(out, nanosecond=True) as writer:
        writer.write(TS_NS[0], FRAMES[0])
    data = out.getvalue()
    assert struct.unpack("<I", data[:4])[0] == MAGIC_NSEC
    sec, frac, incl, orig = struct.unpack("<IIII", data[24:40])
    assert (sec, frac) == divmod(TS_NS[0], 1_000_000_000)
    assert incl == orig == 60


def test_batch_writes_the_same_bytes_as_single_writes() -> None:
    single, batch = io.BytesIO(), io.BytesIO()
    with PcapWriter(single) as writer:
        for ts, frame in zip(TS_NS, FRAMES):
            writer.write(ts, frame)
    buffer = b"junk" + b"".join(FRAMES)
    lengths = np.array([len(f) for f in FRAMES])
    offsets = 4 + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    with PcapWriter(batch) as writer:
        writer.write_batch(np.array(TS_NS), buffer, offsets, lengths)
        writer.write_batch(np.array([], dtype=np.int64), b"", np.array([]), np.array([]))
    assert batch.getvalue() == single.getvalue()
    assert writer.packets == 3


def test_snaplen_truncates_but_keeps_original_length() -> None:
    out = io.BytesIO()
    with PcapWriter(out, snaplen=100) as writer:
        writer.write(TS_NS[0], FRAMES[1])
    incl, orig = struct.unpack("<II", out.getvalue()[32:40])
    assert (incl, orig) == (100, 1514)
    assert len(out.getvalue()) == 24 + 16 + 100


def test_path_target_and_scapy_reads_it(tmp_path) -> None:
    from scapy.utils import rdpcap

    path = tmp_path / "x.pcap"
    with PcapWriter(path) as writer:
        writer.write(TS_NS[0], FRAMES[0])
    packets = rdpcap(str(path))
    assert len(packets) == 1 and bytes(packets[0]) == FRAMES[0]


def test_negative_timestamp_is_refused() -> None:
    with PcapWriter(io.BytesIO()) as writer:
        with pytest.raises(ValueError):
            writer.write(-1, FRAMES[0])
