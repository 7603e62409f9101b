"""Panel reads on behalf of a logged-in user: tenancy enforced by storage, every read audited.

Every web view read goes through :class:`~finsa.storage.tenant.TenantView` (or, for the
sector aggregates an institution may see, through the store with an explicit audit row):

* the **regulator** and the **operator** read each panel store-wide, as themselves;
* an **institution** analyst reads each panel as :data:`~finsa.dashboards.panels.INSTITUTION_READS`
  says: "own" panels run in the institution's tenant database, whose views hold only its rows
  (so no parameter can reach another institution's data: the SQL cannot see it); "sector"
  panels (sector and subsector levels) run store-wide because their result is an aggregate,
  k-anonymous (:mod:`finsa.storage.kanon`): subsectors with fewer than ``k`` institutions are
  shown merged (``insurance+payment``), and a sector smaller than ``k`` shows no figures.
  A panel not listed is refused (fail closed), and so is an ``institution`` parameter naming
  another institution (403, rather than an empty answer that looks like "no alerts").
  On the map, the other institutions keep their name and place, their figures are withheld.

The audit row (``audit_log``) names the principal (regulator, operator or the institution id),
the panel, its parameters and the web user who asked (``audit_user`` among the parameters).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from finsa.dashboards import threat
from finsa.dashboards.panels import INSTITUTION_READS, INSTITUTION_SQL, Panel, placeholders
from finsa.dashboards.users import RESERVED_IDS, User
from finsa.errors import FinsaError
from finsa.storage.audit import AuditEntry, audited_read
from finsa.storage.backend import QueryResult
from finsa.storage.kanon import k_anonymity, merge_groups
from finsa.storage.tenant import TenantView

__all__ = ["PanelReads", "Forbidden", "AUDIT_USER", "WITHHELD"]

#: Parameter carrying the web username into the audit row (unused by the SQL).
AUDIT_USER = "audit_user"
#: Map columns withheld for institutions other than the reader's own.
WITHHELD = ("alerts", "max_severity", "detectors", "score", "level", "open_warning")


class Forbidden(FinsaError):
    """The user may not read this (the web view answers 403)."""


class PanelReads:
    """Runs panels for users against ``store``; tenant views are rebuilt every ``rebuild_s``
    (so tables created after start-up appear in them)."""

    def __init__(self, store: Any, rebuild_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 k: int | None = None) -> None:
        self.store, self.rebuild_s, self._clock = store, rebuild_s, clock
        self.k = k_anonymity(k)
        self._views: dict[str, tuple[TenantView, float]] = {}
        self._lock = threading.Lock()

    def read(self, user: User, panel: Panel, params: dict[str, Any]) -> QueryResult:
        """The panel's result for ``user`` (Forbidden when refused; store errors propagate)."""
        audited = {**params, AUDIT_USER: user.username}
        if user.role != "institution":
            return self._view(user.role).panel(panel.id, panel.sql, audited)
        if user.institution in RESERVED_IDS:  # never a store-wide read through an institution account
            raise Forbidden(f"{user.institution!r} is not an institution")
        if params.get("institution", "") not in ("", user.institution):
            raise Forbidden("an institution's analyst reads only that institution")
        mode = INSTITUTION_READS.get(panel.id)
        sql = INSTITUTION_SQL.get(panel.id, panel.sql)
        audited = {k: v for k, v in audited.items() if k in placeholders(sql) or k == AUDIT_USER}
        if mode == "own":
            result = self._view(user.institution).panel(panel.id, sql, audited)
        elif mode == "sector":
            result = self._sector_aggregate(user, panel.id, sql, audited)
        else:
            raise Forbidden(f"panel {panel.id} is not shown to institutions")
        if panel.id == "sector_map":
            result = withhold_others(result, user.institution)
        return result

    def view_for(self, user: User) -> TenantView:
        """The user's audited, tenant-scoped view (for reads beyond panels: alert page, flow search)."""
        return self._view(user.principal)

    def _view(self, principal: str) -> TenantView:
        with self._lock:
            cached = self._views.get(principal)
            if cached is None or self._clock() - cached[1] > self.rebuild_s:
                try:
                    cached = (TenantView(self.store, principal, k=self.k), self._clock())
                except FinsaError as exc:
                    if "unknown institution" in str(exc):
                        raise Forbidden(f"institution {principal} is not in the registry") from exc
                    raise
                self._views[principal] = cached
            return cached[0]

    def _sector_aggregate(self, user: User, panel_id: str, sql: str, parameters: dict) -> QueryResult:
        """A sector-wide aggregate for an institution: store-wide, audited like TenantView does."""
        entry = AuditEntry(user.institution, "institution", "panel", panel_id, parameters, [])
        if panel_id == "subsector_threat":
            return audited_read(self.store, entry, lambda: self._subsectors(parameters))
        result = audited_read(self.store, entry, lambda: self.store.query(sql, parameters))
        return result if self._sector_size() >= self.k else _blank(result)

    def _sector_size(self) -> int:
        return int(self.store.query("SELECT count() FROM institutions").rows[0][0])

    def _subsectors(self, parameters: dict) -> QueryResult:
        """The subsector levels over k-anonymous groups, from the per-institution levels."""
        per = self.store.query(threat.INSTITUTION_LEVELS_SQL, {"to_ms": parameters.get("to_ms", 0)})
        rows = [dict(zip(per.columns, r)) for r in per.rows]
        sizes: dict[tuple, int] = {}
        for r in rows:
            sizes[(r["subsector"],)] = sizes.get((r["subsector"],), 0) + 1
        groups = merge_groups(sizes, self.k)
        merged: dict[str, list[dict]] = {}
        for r in rows:
            label = groups.get((r["subsector"],))
            if label is not None:
                merged.setdefault(label[0], []).append(r)
        out = [_subsector_row(name, members) for name, members in merged.items()]
        out.sort(key=lambda r: (-r[1], -r[2], r[0]))
        return QueryResult(list(SUBSECTOR_COLUMNS), out)


def withhold_others(result: QueryResult, own: str) -> QueryResult:
    """Map rows of other institutions with their figures set to None (``level_source``: withheld).

    >>> r = QueryResult(["institution_id", "level", "level_source"], [("a", 4, "alerts"), ("b", 1, "alerts")])
    >>> withhold_others(r, "a").rows
    [('a', 4, 'alerts'), ('b', None, 'withheld')]
    """
    cols = result.columns
    blank = {i for i, c in enumerate(cols) if c in WITHHELD}
    src = cols.index("level_source") if "level_source" in cols else -1
    ident = cols.index("institution_id")
    rows = []
    for row in result.rows:
        if row[ident] != own:
            row = tuple(None if i in blank else ("withheld" if i == src else v) for i, v in enumerate(row))
        rows.append(row)
    return QueryResult(list(cols), rows)


#: Columns of the subsector panel (as :data:`finsa.dashboards.threat.SUBSECTOR_LEVELS_SQL` gives them).
SUBSECTOR_COLUMNS = ("subsector", "level", "weighted_level", "elevated", "institutions", "alerts")


def _subsector_row(name: str, members: list[dict]) -> tuple:
    """One group's figures, as the SQL computes them for a subsector."""
    levels = [int(m["level"]) for m in members]
    weights = [int(m["criticality"]) for m in members]
    weighted = 1 if sum(weights) == 0 else round(sum(lv * w for lv, w in zip(levels, weights)) / sum(weights), 2)
    alerts = sum(int(m["alerts"] or 0) for m in members)
    return (name, max(max(levels), 1), weighted, sum(lv >= 3 for lv in levels), len(members), alerts)


def _blank(result: QueryResult) -> QueryResult:
    """The same columns, every figure withheld (a sector smaller than k)."""
    return QueryResult(list(result.columns), [tuple(None for _ in row) for row in result.rows])
