"""Finding 4 on the web view: bank-a's analyst saw the insurance subsector (one insurer) at level
4 with its alert count, while the map withheld that insurer's figures. Now every sector aggregate
shown to an institution covers at least k institutions (k = 3 here): the sector of this module
(two banks, one insurer, one payment firm) is shown as one merged group."""

from __future__ import annotations

from finsa.dashboards.panels import WEB_PANELS_BY_ID
from finsa.dashboards.reads import PanelReads
from finsa.dashboards.users import User, hash_password

_HASH = hash_password("not-used-here", n=2**11)
ANALYST = User(username="ana", role="institution", institution="bank-a", password_hash=_HASH)
REGULATOR = User(username="reg", role="regulator", password_hash=_HASH)


def _rows(result) -> list[dict]:
    return [dict(zip(result.columns, r)) for r in result.rows]


def test_no_subsector_row_shown_to_an_institution_covers_fewer_than_k(store, sector) -> None:
    params = {"from_ms": sector.now_ms - 3_600_000, "to_ms": sector.now_ms, "institution": ""}
    panel = WEB_PANELS_BY_ID["subsector_threat"]
    regulator = _rows(PanelReads(store).read(REGULATOR, panel, params))
    assert {r["subsector"]: r["institutions"] for r in regulator} == {"bank": 2, "insurance": 1, "payment": 1}
    shown = _rows(PanelReads(store, k=3).read(ANALYST, panel, params))
    assert [(r["subsector"], r["institutions"]) for r in shown] == [("bank+insurance+payment", 4)]
    assert shown[0]["alerts"] == sum(r["alerts"] for r in regulator)
    assert shown[0]["level"] == max(r["level"] for r in regulator)


def test_a_sector_smaller_than_k_shows_no_sector_figures(store, sector) -> None:
    params = {"from_ms": sector.now_ms - 3_600_000, "to_ms": sector.now_ms, "institution": ""}
    for pid in ("sector_level", "subsector_threat"):
        rows = _rows(PanelReads(store, k=5).read(ANALYST, WEB_PANELS_BY_ID[pid], params))
        assert all(v is None for r in rows for k, v in r.items() if k not in ("subsector",)), (pid, rows)
