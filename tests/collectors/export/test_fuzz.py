"""Fuzzing every export decoder with random and mutated real datagrams: no crash, no hang, counted."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finsa.collectors.export import metrics as m
from finsa.collectors.export.capture import export_datagrams
from finsa.collectors.export.decoder import ExportDecoder
from finsa.wire import FLOW
from tests.conftest import SHARED_DATA


def _real_datagrams() -> list[bytes]:
    out = []
    for pcap in sorted((SHARED_DATA / "export").glob("*/*.pcap")):
        out += [payload for _, payload, _ in export_datagrams(pcap)]
    return out


REAL = _real_datagrams() if (SHARED_DATA / "export").is_dir() else []
PREFIXES = [struct.pack(">H", 5), struct.pack(">H", 9), struct.pack(">H", 10), struct.pack(">II", 5, 1),
            struct.pack(">II", 5, 2), b""]
WARM = ExportDecoder("bank-a", "edge-1")
for _warm in REAL:
    WARM.feed(_warm, "192.0.2.1")
WARM.take()
FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _observed() -> float:
    return m.DATAGRAMS.total() + m.DATAGRAMS_SKIPPED.value(reason="unknown_protocol") + \
        m.DATAGRAMS_SKIPPED.value(reason="oversized")


def _check(dec: ExportDecoder, data: bytes) -> None:
    before = _observed()
    added = dec.feed(data, "192.0.2.1", 1_700_000_000_000)
    assert added >= 0
    batch = dec.take()  # publishes the decoder's local counts
    assert _observed() == before + 1  # every datagram is counted, decoded or not
    if batch is not None:
        assert batch.type is FLOW and set(batch.columns) == set(FLOW.names)
        assert all(len(col) == len(batch) for col in batch.columns.values())


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), tail=st.binary(max_size=600))
def test_random_datagrams(prefix: bytes, tail: bytes) -> None:
    _check(ExportDecoder("bank-a", "edge-1"), prefix + tail)


@pytest.mark.skipif(not REAL, reason="public export captures are absent")
@FUZZ
@given(data=st.data())
def test_mutated_real_datagrams(data: st.DataObject) -> None:
    dec = WARM  # knows the real templates, so mutated data sets reach the record decoders
    original = bytearray(data.draw(st.sampled_from(REAL)))
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "zero_u16"]))
        pos = data.draw(st.integers(0, max(len(original) - 1, 0)))
        if kind == "flip" and original:
            original[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del original[pos:]
        elif kind == "insert":
            original[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        elif len(original) >= pos + 2:
            original[pos:pos + 2] = b"\x00\x00"
    _check(dec, bytes(original))


def test_zero_length_fields_and_sets_do_not_loop() -> None:
    dec = ExportDecoder("bank-a", "edge-1")
    zero_set = struct.pack(">HHIII", 10, 20, 0, 0, 0) + struct.pack(">HH", 300, 0)
    _check(dec, zero_set)
    zero_template = struct.pack(">HHIII", 10, 28, 0, 0, 0) + struct.pack(">HHHHHH", 2, 12, 300, 1, 8, 0)
    _check(dec, zero_template)
    huge_count = struct.pack(">IIIIIII", 5, 1, 0, 0, 0, 0, 0xFFFFFFFF)
    _check(dec, huge_count)
    assert dec.feed(bytes(70_000), "192.0.2.1") == 0
