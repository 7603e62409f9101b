"""The shared alert head: which source an alert names, when, and at most once per window."""

from __future__ import annotations

import numpy as np

from finsa.detectors.base import WindowDeduper, service_of
from finsa.detectors.features import frame_of
from finsa.wire import FLOW

BATCH = FLOW.make_batch({"src_ip": ["2001:db8::9", "10.0.0.1", "10.0.0.1"], "dst_ip": ["2001:db8::1", "10.0.0.2", "10.0.0.3"],
                         "dst_port": [443, 22, 22], "protocol": [6, 6, 6],
                         "first_seen_ms": [1_000, 2_000, 3_000], "last_seen_ms": [1_500, 9_000, 4_000],
                         "institution_id": ["bank-b", "bank-a", "bank-a"]})


def test_claim_source_names_the_first_rows_source_and_the_latest_end_once_per_window() -> None:
    frame, dedupe = frame_of(BATCH), WindowDeduper(60_000)
    assert dedupe.claim_source(frame, np.array([2, 1])) == ("bank-a", "10.0.0.1", 9_000)
    assert dedupe.claim_source(frame, np.array([1])) is None  # same source, same window
    assert dedupe.claim_source(frame, np.array([0]), span=np.array([0, 1])) == ("bank-b", "2001:db8::9", 9_000)


def test_service_of_brackets_ipv6() -> None:
    frame = frame_of(BATCH)
    assert [service_of(frame, i) for i in range(3)] == ["[2001:db8::1]:443", "10.0.0.2:22", "10.0.0.3:22"]
