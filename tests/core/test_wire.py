"""The wire codec: round trips, forward compatibility, and refusal of malformed input."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from finsa import wire


def _flows(n: int) -> wire.RecordBatch:
    rng = np.random.default_rng(n)
    return wire.FLOW.make_batch({
        "first_seen_ms": rng.integers(0, 2**40, n), "src_port": rng.integers(0, 65536, n),
        "src_ip": [f"10.0.{i % 250}.{i % 7}" for i in range(n)],
        "dst_ip": ["2001:db8::1" if i % 2 else "192.0.2.1" for i in range(n)],
        "institution_id": ["bank-a"] * n, "dns_query": ["" if i % 3 else f"h{i}.example" for i in range(n)],
    })


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_keeps_every_column(compress: bool) -> None:
    batch = _flows(500)
    again = wire.decode_batch(wire.encode_batch(batch, compress=compress))
    assert again.batch_id == batch.batch_id and again.type is wire.FLOW
    for f in wire.FLOW.fields:
        assert np.array_equal(np.asarray(again.columns[f.name]), np.asarray(batch.columns[f.name])), f.name
    assert again.rows()[1]["dst_ip"] == "2001:db8::1" and again.rows()[0]["dst_ip"] == "192.0.2.1"


def test_strings_are_dictionary_encoded() -> None:
    short = wire.FLOW.make_batch({"institution_id": ["a"] * 1000})
    long_ = wire.FLOW.make_batch({"institution_id": ["a-very-long-institution-identifier"] * 1000})
    # the repeated value is stored once: 33 more bytes in all, not 33 more per row
    assert len(wire.encode_batch(long_)) - len(wire.encode_batch(short)) == 33


@pytest.mark.parametrize("values", [["bank-a"] * 300, ["é.example"] * 5, ["", "", "x"], ["x", "", ""],
                                    ["", None, ""], [None, None]])
def test_a_one_valued_string_column_is_encoded_as_its_dictionary(values) -> None:
    """The one-value shortcut writes the bytes the dictionary path writes (a signature over them
    does not change), and a column with a second value, or a value that is not text, takes that path."""
    column = np.array(values, dtype=object)
    items = ["" if v is None else v for v in values]
    firsts = list(dict.fromkeys(items))
    codes = np.array([firsts.index(v) for v in items], dtype="<u1")
    blobs = [v.encode() for v in firsts]
    expected = (struct.pack("<I", len(firsts)) + np.array([len(b) for b in blobs], "<u4").tobytes()
                + b"".join(blobs) + codes.tobytes())
    assert wire._encode_strings(column) == expected
    assert wire._decode_strings(memoryview(expected), len(values)).tolist() == items


def test_non_ascii_strings_round_trip_and_invalid_utf8_is_refused() -> None:
    names = ["", "bank-a", "bücher.example", "例え.jp", "a\U0001F600b", "bank-a", "plain"]
    batch = wire.FLOW.make_batch({"dns_query": names})
    assert wire.decode_batch(wire.encode_batch(batch)).columns["dns_query"].tolist() == names
    ascii_only = wire.FLOW.make_batch({"dns_query": ["x", "", "yz", "x"]})
    assert wire.decode_batch(wire.encode_batch(ascii_only)).columns["dns_query"].tolist() == ["x", "", "yz", "x"]
    raw = bytearray(wire.encode_batch(batch))
    at = raw.index("ü".encode())
    raw[at:at + 2] = b"\xc3\x28"  # not UTF-8; the checksum made right, so the decoder sees it
    raw[40:44] = struct.pack("<I", zlib.crc32(bytes(raw[wire.HEADER_BYTES:])))
    with pytest.raises(wire.WireFormatError) as refused:
        wire.decode_batch(bytes(raw))
    assert refused.value.reason == "bad_utf8"


def test_empty_batch_round_trips() -> None:
    empty = wire.ALERT.make_batch({}, n_rows=0)
    assert len(wire.decode_batch(wire.encode_batch(empty))) == 0


def test_unknown_column_is_ignored_and_missing_column_defaults() -> None:
    batch = wire.ALERT.make_batch({"entity": ["203.0.113.9"], "severity": [4]})
    data = bytearray(wire.encode_batch(batch))
    # rename column "score" to "scorX": an unknown column to this decoder, a missing one too
    pos = data.index(b"score")
    data[pos:pos + 5] = b"scorX"
    body = bytes(data[wire.HEADER_BYTES:])
    header = bytearray(data[:wire.HEADER_BYTES])
    struct.pack_into("<I", header, 40, zlib.crc32(body))
    again = wire.decode_batch(bytes(header) + body)
    assert again.columns["score"][0] == 0.0 and again.columns["entity"][0] == "203.0.113.9"


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: d[:10], "truncated"),
    (lambda d: b"XXXX" + d[4:], "bad_magic"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "bad_checksum"),
])
def test_malformed_batches_are_refused_with_a_reason(mutate, reason) -> None:
    data = wire.encode_batch(_flows(10))
    with pytest.raises(wire.WireFormatError) as err:
        wire.decode_batch(mutate(data))
    assert err.value.reason == reason


def test_wrong_record_type_is_refused() -> None:
    data = wire.encode_batch(wire.ALERT.make_batch({"severity": [1]}))
    with pytest.raises(wire.WireFormatError, match="wrong_record_type"):
        wire.decode_batch(data, expect=wire.FLOW)


def test_decompression_bomb_is_refused() -> None:
    batch = _flows(3)
    data = bytearray(wire.encode_batch(batch, compress=True))
    bomb = zlib.compress(b"\0" * (50 * 1024 * 1024), 9)
    header = bytearray(data[:wire.HEADER_BYTES])
    struct.pack_into("<III", header, 32, len(bomb), 1000, zlib.crc32(bomb))
    with pytest.raises(wire.WireFormatError, match="bad_compression"):
        wire.decode_batch(bytes(header) + bomb)


def test_nan_in_a_float_column_is_refused() -> None:
    with pytest.raises(wire.WireFormatError, match="not_finite"):
        wire.ALERT.make_batch({"severity": [1.5, float("nan")]})


def test_ragged_columns_are_refused() -> None:
    with pytest.raises(wire.WireFormatError, match="ragged"):
        wire.FLOW.make_batch({"src_port": [1, 2], "dst_port": [3]})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_decoder(data: bytes) -> None:
    try:
        wire.decode_batch(data)
    except wire.WireFormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_batches_never_crash_the_decoder(data) -> None:
    raw = bytearray(wire.encode_batch(_flows(5), compress=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        wire.decode_batch(bytes(raw))
    except wire.WireFormatError:
        pass
