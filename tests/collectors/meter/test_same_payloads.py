"""distinct_payloads: rows grouped by equal bytes (from ``skip`` on), numbered by first member."""

from __future__ import annotations

import numpy as np

from finsa.collectors.meter.same_payloads import WIDTH_BYTES, distinct_payloads


def _layout(parts: list[bytes]) -> tuple[bytes, np.ndarray, np.ndarray]:
    lens = np.array([len(p) for p in parts], dtype=np.int64)
    starts = np.cumsum(lens) - lens
    return b"".join(parts), starts, starts + lens


def test_groups_are_equal_payloads_numbered_by_their_first_row() -> None:
    rng = np.random.default_rng(3)
    vocab = [bytes(rng.integers(0, 4, int(rng.integers(2, 100))).astype(np.uint8)) for _ in range(9)]
    picks = rng.integers(0, len(vocab), 500)
    data, starts, ends = _layout([vocab[i] for i in picks])
    firsts, groups = distinct_payloads(data, starts, ends)
    payloads = [data[s:e] for s, e in zip(starts.tolist(), ends.tolist())]
    expected_firsts = sorted({p: i for i, p in reversed(list(enumerate(payloads)))}.values())
    assert firsts.tolist() == expected_firsts
    assert [payloads[firsts[g]] for g in groups.tolist()] == payloads


def test_skipped_prefix_long_and_outside_payloads() -> None:
    long = b"x" * (WIDTH_BYTES + 1)
    data, starts, ends = _layout([b"\x00\x01abc", b"\x00\x02abc", long, long, b"\x00\x03abc"])
    assert distinct_payloads(data, starts, ends, skip=2)[1].tolist() == [0, 0, 1, 2, 0]
    assert distinct_payloads(data, starts, ends)[1].tolist() == [0, 1, 2, 3, 4]  # IDs differ; long: own groups
    past = np.array([0, len(data) - 2]), np.array([2, len(data) + 5])  # a payload running past the buffer
    assert distinct_payloads(data, *past)[1].tolist() == [0, 1]
