"""collectors.csv_rows writes what Python's csv module writes for the same rows."""

from __future__ import annotations

import csv
import io

import numpy as np
from hypothesis import given, settings, strategies as st

from finsa.collectors.csv_rows import csv_chunks
from finsa.wire import FLOW, RecordBatch


def _expected(batch: RecordBatch) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([row[name] for name in FLOW.names] for row in batch.rows())
    return text.getvalue().encode()


def _written(batch: RecordBatch, chunk_rows: int = 8192) -> bytes:
    chunks = csv_chunks(batch, FLOW, chunk_rows)
    assert chunks is not None
    return b"".join(bytes(c) for c in chunks)


def test_extremes_of_every_number_kind_and_address() -> None:
    batch = FLOW.make_batch({
        "flow_id": np.array([0, 2**64 - 1, 10**19, 9], dtype=np.uint64),
        "first_seen_ms": np.array([-(2**63), 2**63 - 1, 0, -1], dtype=np.int64),
        "protocol": [0, 255, 10, 99], "vlan_id": [0, 65535, 1000, 9999],
        "src_ip": ["0.0.0.0", "255.255.255.255", "::", "2001:db8::1"],
        "dst_ip": ["::ffff:1.2.3.4", "10.0.0.1", "fe80::1", "192.0.2.10"],
        "institution_id": ["bank-a"] * 4, "http_host": [None, "é.example", "", "x"],
    })
    assert _written(batch) == _expected(batch)


def test_chunks_cover_every_row_once() -> None:
    n = 1000
    batch = FLOW.make_batch({"flow_id": np.arange(n, dtype=np.uint64), "src_ip": [f"10.0.{i % 256}.{i // 256}"
                                                                                 for i in range(n)],
                             "dns_query": [f"q{i % 7}.example" for i in range(n)]})
    assert _written(batch, chunk_rows=64) == _written(batch, chunk_rows=n) == _expected(batch)


def test_many_distinct_text_objects() -> None:
    """More distinct objects than the address hash tells apart: codes by value."""
    texts = [f"host-{i}.example" for i in range(70_000)]
    batch = FLOW.make_batch({"tls_sni": texts, "http_uri": [texts[i % 3] for i in range(70_000)]})
    assert _written(batch) == _expected(batch)


def test_a_text_to_quote_gives_none() -> None:
    for value in ("a,b", 'say "x"', "line\nbreak", "cr\r"):
        assert csv_chunks(FLOW.make_batch({"ssh_banner": ["plain", value]}), FLOW) is None


def test_empty_batch_writes_nothing() -> None:
    assert _written(FLOW.make_batch({}, n_rows=0)) == b""


_TEXT = st.one_of(st.none(), st.text(st.characters(blacklist_characters=',"\r\n', blacklist_categories=("Cs",)),
                                     max_size=12))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(-(2**63), 2**63 - 1), st.integers(0, 65535),
                          st.binary(min_size=16, max_size=16), st.sampled_from([4, 6]), _TEXT, _TEXT),
                min_size=1, max_size=40))
def test_random_rows(rows) -> None:
    ips = np.array([np.frombuffer(raw, np.uint8) if version == 6 else
                    np.frombuffer(bytes(10) + b"\xff\xff" + raw[:4], np.uint8) for _, _, _, raw, version, _, _ in rows])
    batch = FLOW.make_batch({
        "flow_id": np.array([r[0] for r in rows], dtype=np.uint64),
        "last_seen_ms": np.array([r[1] for r in rows], dtype=np.int64),
        "dst_port": np.array([r[2] for r in rows], dtype=np.uint16),
        "src_ip": ips, "dns_query": [r[5] for r in rows], "app_markers": [r[6] for r in rows]})
    assert _written(batch, chunk_rows=7) == _expected(batch)
