"""finsa.allocator: glibc tuning that a stream worker applies (issue 17's soak: RSS followed freed
batches up while the Python heap stayed flat)."""

from __future__ import annotations

import doctest

from finsa import allocator


def test_doctests() -> None:
    result = doctest.testmod(allocator)
    assert result.failed == 0 and result.attempted > 0


def test_a_non_positive_arena_count_is_refused() -> None:
    assert allocator.limit_arenas(0) is False
    assert allocator.limit_arenas(-3) is False
