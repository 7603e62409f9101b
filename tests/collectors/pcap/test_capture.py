"""read_capture: pcap byte orders and resolutions, pcapng blocks, chunks, slicing, bad input."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from finsa.collectors.pcap.capture import PacketBatch, read_capture
from finsa.errors import CaptureError
from tests.conftest import shared_data

FRAMES = [bytes(range(60)), b"\xaa" * 100, b"\x01\x02" * 21]


def _pcap(order: str = "<", nano: bool = False, linktype: int = 1, frames=FRAMES) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for i, frame in enumerate(frames):
        frac = 123_456_789 if nano else 123_456
        out.append(struct.pack(order + "IIII", 1_700_000_000 + i, frac, len(frame), len(frame) + 4) + frame)
    return b"".join(out)


def _block(btype: int, body: bytes, order: str = "<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def _pcapng(order: str = "<", tsresol: int = 9) -> bytes:
    shb = _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)
    opts = struct.pack(order + "HH", 9, 1) + bytes([tsresol, 0, 0, 0]) + struct.pack(order + "HH", 0, 0)
    idb = _block(1, struct.pack(order + "HHI", 113, 0, 65535) + opts, order)
    idb2 = _block(1, struct.pack(order + "HHI", 1, 0, 65535), order)  # default microseconds
    ticks = 1_700_000_000_123_456_789
    epb = _block(6, struct.pack(order + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, 60, 64) + FRAMES[0], order)
    epb2 = _block(6, struct.pack(order + "IIIII", 1, 0, 5_000_000, 100, 100) + FRAMES[1], order)
    spb = _block(3, struct.pack(order + "I", 42) + FRAMES[2], order)
    other = _block(5, b"statistics", order)
    return shb + idb + idb2 + epb + other + epb2 + spb


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(order: str, nano: bool) -> None:
    [batch] = read_capture(io.BytesIO(_pcap(order, nano)))
    assert len(batch) == 3
    assert [batch.packet(i) for i in range(3)] == FRAMES
    assert batch.caplen.tolist() == [60, 100, 42]
    assert batch.wirelen.tolist() == [64, 104, 46]
    frac_ns = 123_456_789 if nano else 123_456_000
    assert int(batch.ts_ns[1]) == 1_700_000_001 * 10**9 + frac_ns
    assert set(batch.linktype.tolist()) == {1}


def test_chunks_and_slices_share_the_buffer(tmp_path) -> None:
    path = tmp_path / "many.pcap"
    path.write_bytes(_pcap(frames=FRAMES * 10))
    chunks = list(read_capture(path, chunk_packets=7))
    assert [len(c) for c in chunks] == [7, 7, 7, 7, 2]
    assert [c.packet(i) for c in chunks for i in range(len(c))] == FRAMES * 10
    part = chunks[0][2:5]
    assert isinstance(part, PacketBatch) and len(part) == 3
    assert part.packet(0) == FRAMES[2] and part.data is chunks[0].data


@pytest.mark.parametrize("advice", ["kernel's", "refused"])
def test_a_mapped_file_reads_the_same_whether_the_pages_are_populated_or_not(tmp_path, monkeypatch,
                                                                            advice: str) -> None:
    from finsa.collectors.pcap import capture

    if advice == "refused":  # an advice the kernel does not know (EINVAL): reading goes on unchanged
        monkeypatch.setattr(capture, "_POPULATE_READ", 0x7FFF)
    populated = []
    real = capture._populate
    monkeypatch.setattr(capture, "_populate", lambda window: (populated.append(len(window)), real(window)))
    path = tmp_path / "mapped.pcap"
    path.write_bytes(_pcap(frames=FRAMES * 10))
    chunks = list(read_capture(str(path), chunk_packets=7))  # a file read_capture opens itself is mapped
    assert [c.packet(i) for c in chunks for i in range(len(c))] == FRAMES * 10
    assert populated and populated[0] > 0  # the window was advised (and a refusal did not stop the read)


def test_pcapng_blocks_interfaces_and_resolution() -> None:
    for order in "<>":
        [batch] = read_capture(io.BytesIO(_pcapng(order)))
        assert len(batch) == 3
        assert batch.linktype.tolist() == [113, 1, 113]
        assert int(batch.ts_ns[0]) == 1_700_000_000_123_456_789
        assert int(batch.ts_ns[1]) == 5_000_000 * 1000  # default resolution: microseconds
        assert int(batch.ts_ns[2]) == int(batch.ts_ns[1])  # a simple packet block repeats the last time
        assert batch.packet(2) == FRAMES[2] and int(batch.wirelen[0]) == 64


def test_pcapng_binary_resolution() -> None:
    [batch] = read_capture(io.BytesIO(_pcapng(tsresol=0x80 | 10)))  # 2^-10 s ticks
    assert int(batch.ts_ns[0]) == 2**63 - 1  # that many 1/1024 s ticks is beyond int64 ns: clamped


def test_real_pcapng_with_nanoseconds() -> None:
    path = shared_data("flows/nfstream") / "quic_interop_V.pcapng"
    batches = list(read_capture(path, chunk_packets=100))
    assert sum(len(b) for b in batches) == 246
    ts = np.concatenate([b.ts_ns for b in batches])
    assert (ts % 1000 != 0).any()  # nanosecond digits survive


def test_truncated_last_record_is_counted(tmp_path) -> None:
    data = _pcap()[:-10]
    batches = list(read_capture(io.BytesIO(data)))
    assert sum(len(b) for b in batches) == 2
    assert sum(b.skipped.get("truncated_record", 0) for b in batches) == 1
    ng = _pcapng()[:-7]
    batches = list(read_capture(io.BytesIO(ng)))
    assert sum(len(b) for b in batches) == 2
    assert sum(b.skipped.get("truncated_record", 0) for b in batches) == 1


def test_absurd_record_length_stops_cleanly() -> None:
    data = _pcap() + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 60) + b"x" * 100
    batches = list(read_capture(io.BytesIO(data)))
    assert sum(len(b) for b in batches) == 3
    assert sum(b.skipped.get("bad_record_length", 0) for b in batches) == 1


@pytest.mark.parametrize("data", [b"", b"abc", b"hello world, not a capture at all",
                                  struct.pack("<II", 0x0A0D0D0A, 28) + b"\x00" * 20])
def test_not_a_capture_raises_capture_error(data: bytes, tmp_path) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(data)
    with pytest.raises(CaptureError):
        list(read_capture(path))


def test_missing_file_is_a_capture_error(tmp_path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        list(read_capture(tmp_path / "absent.pcap"))


def test_stdin(monkeypatch) -> None:
    class FakeStdin:
        buffer = io.BytesIO(_pcap())

    monkeypatch.setattr("sys.stdin", FakeStdin)
    [batch] = read_capture("-")
    assert len(batch) == 3


def test_reader_problems_travel_with_the_first_slice_only() -> None:
    data = _pcap() + struct.pack("<IIII", 1, 0, 0xFFFFFFF0, 60)  # framing breaks after 3 records
    [whole] = read_capture(io.BytesIO(data))
    assert len(whole) == 3 and whole.skipped == {"bad_record_length": 1}
    assert whole[0:2].skipped == whole.skipped and whole[2:].skipped == {}


def test_a_pipe_yields_packets_before_it_ends() -> None:
    import os
    import threading

    read_fd, write_fd = os.pipe()
    data = _pcap()
    writer = os.fdopen(write_fd, "wb", buffering=0)
    writer.write(data)  # the writer stays open: the reader must not wait for 4 MiB or EOF
    got = []

    def consume() -> None:
        with os.fdopen(read_fd, "rb") as reader:
            for batch in read_capture(reader):
                got.append(len(batch))
                if sum(got) >= 3:
                    return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout=10)
    writer.close()
    assert sum(got) == 3
