"""The threat-level SQL against a store with a known sector, cross-checked with the formula."""

from __future__ import annotations

import pytest

from finsa.dashboards import threat


def _levels(store, to_ms):
    return {r["institution_id"]: r for r in store.query(threat.INSTITUTION_LEVELS_SQL, {"to_ms": to_ms}).dicts()}


def test_attacked_institutions_rank_above_quiet_ones(store, sector):
    rows = _levels(store, sector.now_ms)
    assert set(rows) == {"bank-a", "bank-q", "ins-c", "pay-d"}
    assert rows["bank-a"]["level"] == 5
    assert rows["ins-c"]["level"] == 4
    assert rows["pay-d"]["level"] == 2
    assert rows["bank-q"]["level"] == 1  # its only alert is two hours old
    assert rows["bank-q"]["alerts"] == 0


def test_sql_matches_the_documented_formula(store, sector):
    rows = _levels(store, sector.now_ms)
    a = rows["bank-a"]
    assert (a["alerts"], a["detectors"], a["max_severity"]) == (9, 3, 5)  # the redelivery counts once
    assert a["score"] == pytest.approx(threat.reference_score([4, 5, 4] * 3, 3, 5))
    assert rows["ins-c"]["score"] == pytest.approx(threat.reference_score([4] * 3, 1, 2))
    assert rows["pay-d"]["score"] == pytest.approx(threat.reference_score([2], 1, 3))
    assert rows["bank-q"]["score"] == 0


def test_window_ends_at_to_ms(store, sector):
    rows = _levels(store, to_ms=sector.now_ms - 119 * 60_000)  # only the old bank-q alert is in its window
    assert rows["bank-q"]["level"] >= 3
    assert rows["bank-a"]["level"] == 1


def test_sector_level_is_the_highest_with_a_weighted_mean(store, sector):
    (row,) = store.query(threat.SECTOR_LEVEL_SQL, {"to_ms": sector.now_ms}).dicts()
    assert row["level"] == 5
    assert row["elevated"] == 2 and row["institutions"] == 4 and row["alerts"] == 13
    expected = (5 * 5 + 1 * 3 + 4 * 2 + 2 * 3) / (5 + 3 + 2 + 3)
    assert row["weighted_level"] == pytest.approx(round(expected, 2))


def test_subsector_levels(store, sector):
    rows = {r["subsector"]: r for r in store.query(threat.SUBSECTOR_LEVELS_SQL, {"to_ms": sector.now_ms}).dicts()}
    assert rows["bank"]["level"] == 5 and rows["bank"]["institutions"] == 2
    assert rows["insurance"]["level"] == 4 and rows["payment"]["level"] == 2


@pytest.mark.parametrize("score, level", [(0, 1), (0.99, 1), (1, 2), (2, 3), (3.49, 3), (3.5, 4), (5, 5), (50, 5)])
def test_level_of(score, level):
    assert threat.level_of(score) == level


def test_more_severe_or_broader_alerts_score_higher():
    base = threat.reference_score([3], 1, 3)
    assert threat.reference_score([4], 1, 3) > base
    assert threat.reference_score([3, 3], 1, 3) > base
    assert threat.reference_score([3, 3], 2, 3) > threat.reference_score([3, 3], 1, 3)
    assert threat.reference_score([3], 1, 5) > base
