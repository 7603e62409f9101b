"""Hostile input: random and mutated captures never crash the reader, decoder or meter."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finsa.collectors.meter.decode import decode_packets
from finsa.collectors.meter.flowmeter import FlowMeter, meter_capture
from finsa.collectors.pcap.capture import PacketBatch, read_capture
from finsa.errors import CaptureError
from tests.conftest import SHARED_DATA, shared_data

SEED = (SHARED_DATA / "flows" / "zeek" / "wikipedia.pcap")
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def _meter_all(data: bytes, profile: str = "agent") -> tuple[int, int]:
    """(packets read, packets flowed + skipped) of a capture in memory; CaptureError allowed."""
    meter = FlowMeter(profile)
    flowed = 0
    try:
        for batch in read_capture(io.BytesIO(data), chunk_packets=16):
            out = meter.add(batch)
            flowed += 0 if out is None else int((out.columns["src2dst_packets"] + out.columns["dst2src_packets"]).sum())
    except CaptureError:
        return 0, 0
    out = meter.flush()
    flowed += 0 if out is None else int((out.columns["src2dst_packets"] + out.columns["dst2src_packets"]).sum())
    skipped = sum(v for k, v in meter.stats["skipped"].items() if k not in ("truncated_record", "bad_record_length", "bad_block"))
    return meter.stats["packets"], flowed + skipped


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_never_crash(data: bytes) -> None:
    read, accounted = _meter_all(data)
    assert read == accounted


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=120), max_size=20), st.sampled_from([1, 101, 113, 276, 0, 9999]))
def test_random_frames_are_flowed_or_counted(frames: list[bytes], linktype: int) -> None:
    batch = PacketBatch.from_packets([(i * 1000, f) for i, f in enumerate(frames)], linktype=linktype)
    decoded = decode_packets(batch)
    assert len(decoded) + sum(decoded.skipped.values()) == len(frames)
    for profile in ("nfstream", "zeek", "agent"):
        meter = FlowMeter(profile)
        meter.add(batch)
        meter.flush()
        assert meter.stats["packets"] == len(frames)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(24, 40_000), st.integers(0, 255)), min_size=1, max_size=40))
def test_mutated_real_capture(mutations: list[tuple[int, int]]) -> None:
    if not SEED.exists():
        pytest.skip("public data absent")
    data = bytearray(SEED.read_bytes())
    for pos, value in mutations:
        data[pos % len(data)] = value
    read, accounted = _meter_all(bytes(data), "zeek")
    assert read == accounted


@pytest.mark.parametrize("name", ["badpackets.pcap", "fuzz-2021-06-07-c6c72a0a56.pcap", "malformed_icmp.pcap"])
def test_malformed_reference_captures(name: str) -> None:
    path = shared_data("flows/nfstream") / name
    for profile in ("nfstream", "zeek", "agent"):
        flows = list(meter_capture(path, profile))
        assert sum(len(b) for b in flows) >= 1


def test_garbage_and_truncated_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"\x13\x37" * 500)
    with pytest.raises(CaptureError, match="not a pcap"):
        list(meter_capture(garbage))
    good = shared_data("flows/nfstream") / "google_ssl.pcap"
    data = good.read_bytes()
    for cut in (24, 30, 40, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{cut}.pcap"
        path.write_bytes(data[:cut])
        meter = FlowMeter()
        for batch in read_capture(path):
            meter.add(batch)
        meter.flush()
        if cut > 24:
            assert meter.stats["skipped"].get("truncated_record") == 1
    header_only = tmp_path / "empty.pcap"
    header_only.write_bytes(PCAP_HEADER)
    assert list(meter_capture(header_only)) == []
