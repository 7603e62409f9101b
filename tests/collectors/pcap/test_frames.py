"""frame_records: the compiled walk finds exactly the record chain and its header fields, whatever
the payloads look like; read_capture through memory-mapped windows gives the same packets as
through a stream."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from finsa.collectors.pcap import capture as pcap, frames as pcapframe
from finsa.collectors.pcap.capture import read_capture
from finsa.collectors.pcap.frames import frame_records

T0 = 1_700_000_000


def _records(n: int, seed: int, fake_headers: bool, order: str = "<") -> tuple[bytes, list[int]]:
    """Records of random lengths; with ``fake_headers`` payloads are full of plausible headers."""
    rng = np.random.default_rng(seed)
    out, heads, pos = [], [], 0
    for i in range(n):
        cap = int(rng.integers(0, 1600))
        if fake_headers:
            fake = struct.pack(order + "IIII", T0 + i, 5, int(rng.integers(0, 200)), 1500)
            body = (fake * (cap // 16 + 2))[int(rng.integers(0, 16)):][:cap]
        else:
            body = rng.integers(0, 256, cap, dtype=np.uint8).tobytes()
        out.append(struct.pack(order + "IIII", T0 + i // 100, int(rng.integers(0, 10**6)), cap, cap + 4) + body)
        heads.append(pos)
        pos += 16 + cap
    return b"".join(out), heads


@pytest.mark.parametrize("fake_headers", [False, True])
@pytest.mark.parametrize("order", ["<", ">"])
def test_the_walk_finds_exactly_the_record_chain(fake_headers: bool, order: str) -> None:
    data, heads = _records(3000, seed=3, fake_headers=fake_headers, order=order)
    cut = len(data) - 7  # the last record is incomplete
    got = frame_records(data, 0, cut, order, 1000)
    assert got.heads.tolist() == heads[:-1] and got.end == heads[-1] and got.framed
    fields = [struct.unpack_from(order + "IIII", data, h) for h in heads[:-1]]
    assert got.ts_ns.tolist() == [sec * 1_000_000_000 + frac * 1000 for sec, frac, _, _ in fields]
    assert got.caplen.tolist() == [f[2] for f in fields] and got.wirelen.tolist() == [f[3] for f in fields]


def test_an_absurd_length_stops_framing_where_the_plain_walk_would() -> None:
    data, heads = _records(3000, seed=5, fake_headers=True)
    bad = heads[2000]
    broken = data[:bad + 8] + struct.pack("<I", 0xFFFFFFF0) + data[bad + 12:]
    got = frame_records(broken, 0, len(broken), "<", 1000)
    assert got.heads.tolist() == heads[:2000] and got.end == bad and not got.framed


def test_mapped_windows_read_the_same_packets_as_a_stream(tmp_path, monkeypatch) -> None:
    data, _ = _records(4000, seed=9, fake_headers=True)
    huge = struct.pack("<IIII", T0, 0, 600_000, 600_000) + bytes(600_000)  # larger than a window
    file_bytes = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 1 << 20, 1) + data + huge + data[:100]
    path = tmp_path / "windows.pcap"
    path.write_bytes(file_bytes)
    monkeypatch.setattr(pcap, "_WINDOW_BYTES", 1 << 19)
    mapped = list(read_capture(path, chunk_packets=999))
    streamed = list(read_capture(io.BytesIO(file_bytes), chunk_packets=999))
    for name in ("ts_ns", "caplen", "wirelen"):
        assert np.array_equal(np.concatenate([getattr(b, name) for b in mapped]),
                              np.concatenate([getattr(b, name) for b in streamed]))
    assert [b.packet(i) for b in mapped for i in range(len(b))] == \
        [b.packet(i) for b in streamed for i in range(len(b))]
    assert sum(len(b) for b in mapped) == 4001
    assert sum(b.skipped.get("truncated_record", 0) for b in mapped) == 1


def test_small_buffers_and_offsets() -> None:
    rec = struct.pack("<IIII", T0, 5, 4, 60) + b"abcd"
    assert frame_records(rec * 2, 0, 40, "<", 1000).heads.tolist() == [0, 20]
    assert frame_records(b"xx" + rec * 2, 2, 42, "<", 1).heads.tolist() == [2, 22]
    assert frame_records(rec * 2, 0, 1000, "<", 1).heads.tolist() == [0, 20]  # end beyond the buffer: clipped
    empty = frame_records(b"", 0, 0, "<", 1000)
    assert len(empty.heads) == 0 and empty.end == 0 and empty.framed
    assert pcapframe.MAX_RECORD_BYTES == 256 << 20
