"""Analyst work on alerts, stored append-only: triage events, cases and allowlist proposals.

Three tables, each a log of changes (one row per change, with who and when); the current state
of an alert, a case or an allowlist entry is its latest row (``argMax(..., time)``):

* ``triage_events``: an alert's state (new, acknowledged, in_progress, escalated, closed), the
  verdict when closed (true_positive, false_positive, benign_true_positive), assignee, note,
  and the case it belongs to;
* ``cases``: a group of alerts of one institution (a campaign can become one), open, escalated
  to the regulator, or closed;
* ``allowlist_entries``: an entity a detector should no longer alert on at an institution,
  proposed by a false-positive verdict and accepted (or rejected) by the operator. Workers read
  the accepted, unexpired ones (:meth:`TriageLog.accepted_entries`) and apply them live.

Every change is also appended to ``audit_log`` (action ``triage``, ``case`` or ``allowlist``).
Who may change what is the web view's business (:mod:`finsa.dashboards.soc.triage`); this module
checks values only.

>>> from finsa.storage.backend import open_store
>>> store = open_store(); _ = store.migrate()
>>> log = TriageLog(store)
>>> log.change_alert("a1", "bank-a", Actor("ana", "institution", "bank-a"), state="acknowledged")["state"]
'acknowledged'
>>> log.alert_state("a1")["user"], store.query("SELECT action FROM audit_log").rows
('ana', [('triage',)])
>>> store.close()
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from finsa.errors import StorageError

from finsa.storage.audit import AuditEntry

STATES = ("new", "acknowledged", "in_progress", "escalated", "closed")
VERDICTS = ("true_positive", "false_positive", "benign_true_positive")
CASE_STATES = ("open", "escalated", "closed")
ENTRY_STATES = ("proposed", "accepted", "rejected")
MAX_NOTE_CHARS = 4000

_COMMON = """time DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1)) COMMENT 'When the change was made',
    user String COMMENT 'Web user (or command) who made it',
    role LowCardinality(String) COMMENT 'operator, regulator or institution'"""


def triage_events_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS triage_events (
    {_COMMON},
    alert_id String COMMENT 'The alert',
    institution_id LowCardinality(String) COMMENT 'Institution of the alert',
    state LowCardinality(String) COMMENT 'new, acknowledged, in_progress, escalated or closed',
    verdict LowCardinality(String) COMMENT 'When closed: true_positive, false_positive or benign_true_positive',
    assignee String COMMENT 'Who works on it',
    note String COMMENT 'Note added with this change',
    case_id String COMMENT 'Case the alert belongs to, empty when none'
) ENGINE = MergeTree ORDER BY (institution_id, alert_id, time)
COMMENT 'Every change of an alert''s triage state (latest row = current state)'"""


def cases_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS cases (
    {_COMMON},
    case_id String COMMENT 'Case id',
    institution_id LowCardinality(String) COMMENT 'Institution that owns the case',
    title String COMMENT 'Short title',
    status LowCardinality(String) COMMENT 'open, escalated (to the regulator) or closed',
    campaign_id String COMMENT 'Campaign the case was made from, empty when none',
    alert_ids Array(String) COMMENT 'Alerts grouped in the case',
    note String COMMENT 'Note added with this change'
) ENGINE = MergeTree ORDER BY (institution_id, case_id, time)
COMMENT 'Every change of a case (latest row = current state)'"""


def allowlist_entries_ddl() -> str:
    return f"""CREATE TABLE IF NOT EXISTS allowlist_entries (
    {_COMMON},
    entry_id String COMMENT 'Entry id',
    entity String COMMENT 'Address or CIDR range no longer alerted on',
    detector LowCardinality(String) COMMENT 'Detector it applies to',
    institution_id LowCardinality(String) COMMENT 'Institution it applies to',
    reason String COMMENT 'Why (the analyst''s verdict note)',
    expires_ms Int64 COMMENT 'End of the acceptance (flow time, ms since the epoch)',
    status LowCardinality(String) COMMENT 'proposed, accepted or rejected',
    alert_id String COMMENT 'Alert whose false-positive verdict proposed it'
) ENGINE = MergeTree ORDER BY (institution_id, entry_id, time)
COMMENT 'Allowlist proposals and the operator''s decisions (latest row = current state)'"""


TABLES = {"triage_events": triage_events_ddl, "cases": cases_ddl, "allowlist_entries": allowlist_entries_ddl}

#: Flow search by destination (the flows' key orders sources only): a bloom filter per 4 granules
#: answers ``dst_ip = X`` / ``IN (...)``; measured in bench/flow_search.py.
DST_INDEX = "dst_ip_bloom"


def dst_index_needed(store: Any) -> bool:
    """True on a single-node ``flows`` (a MergeTree) without the index; a cluster's Distributed
    ``flows`` is left alone (the index goes on ``flows_local``, see finsa.storage.cluster)."""
    engine = store._run_query("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'flows'",
                              None).rows
    if not engine or not engine[0][0].endswith("MergeTree"):
        return False
    rows = store._run_query("SELECT count() FROM system.data_skipping_indices WHERE database = currentDatabase() "
                            "AND table = 'flows' AND name = {n:String}", {"n": DST_INDEX}).rows
    return not rows[0][0]


def add_dst_index(store: Any) -> None:
    store._run_command(f"ALTER TABLE flows ADD INDEX IF NOT EXISTS {DST_INDEX} dst_ip TYPE bloom_filter(0.01) GRANULARITY 4")
    store._run_command(f"ALTER TABLE flows MATERIALIZE INDEX {DST_INDEX} SETTINGS mutations_sync = 1")


def _current_sql(table: str, key: str, columns: tuple[str, ...], having: str, limit: int) -> str:
    """The latest value of each column per key (constant names only; values go in parameters).

    >>> _current_sql("cases", "case_id", ("status",), "status = {s:String}", 5)
    'SELECT case_id, argMax(status, time) AS status, max(time) AS updated FROM cases GROUP BY case_id HAVING status = {s:String} ORDER BY updated DESC LIMIT 5'
    """
    latest = "".join(f"argMax({c}, time) AS {c}, " for c in columns)
    return (f"SELECT {key}, {latest}max(time) AS updated FROM {table} GROUP BY {key} "
            f"HAVING {having} ORDER BY updated DESC LIMIT {int(limit)}")


@dataclass(frozen=True)
class Actor:
    """Who makes a change: web username, role, and the principal (institution id or role)."""

    user: str
    role: str
    principal: str


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise StorageError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


class TriageLog:
    """Reads and appends the three logs of ``store`` (see the module docstring)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def _append(self, table: str, row: dict[str, Any], actor: Actor, audit_key: str) -> None:
        row = {"time": _datetime(row.pop("time_ms")), "user": actor.user, "role": actor.role, **row}
        body = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        with self.store._lock:
            self.store._guarded("insert", self.store._insert_bytes, table, [], body, "JSONEachRow", {})
        action = {"triage_events": "triage", "cases": "case", "allowlist_entries": "allowlist"}[table]
        institutions = [row["institution_id"]] if row.get("institution_id") else []
        params = {k: v for k, v in row.items() if k not in ("time", "user", "role")}
        self.store.audit(AuditEntry(actor.principal, actor.role, action, audit_key,
                                    {**params, "audit_user": actor.user}, institutions, rows=1))

    def _latest(self, table: str, key: str, value: str) -> dict[str, Any] | None:
        result = self.store.query(f"SELECT * FROM {table} WHERE {key} = {{v:String}} "
                                  "ORDER BY time DESC LIMIT 1", {"v": value})
        rows = result.dicts()
        return rows[0] if rows else None

    # --- alerts ------------------------------------------------------------------------
    def alert_state(self, alert_id: str) -> dict[str, Any] | None:
        """The alert's latest triage row (None: never triaged, i.e. ``new``)."""
        return self._latest("triage_events", "alert_id", alert_id)

    def alert_history(self, alert_id: str) -> list[dict[str, Any]]:
        return self.store.query("SELECT * FROM triage_events WHERE alert_id = {v:String} ORDER BY time",
                                {"v": alert_id}).dicts()

    def change_alert(self, alert_id: str, institution_id: str, actor: Actor, *, state: str | None = None,
                     verdict: str | None = None, assignee: str | None = None, note: str = "",
                     case_id: str | None = None) -> dict[str, Any]:
        """Append one change (fields not given keep their current value); returns the new state."""
        current = self.alert_state(alert_id) or {"state": "new", "verdict": "", "assignee": "", "case_id": ""}
        new = {"state": state or current["state"], "verdict": current["verdict"] if verdict is None else verdict,
               "assignee": current["assignee"] if assignee is None else assignee,
               "case_id": current["case_id"] if case_id is None else case_id}
        _check(new["state"], STATES, "state")
        if new["state"] == "closed":
            _check(new["verdict"], VERDICTS, "a closed alert's verdict")
        elif verdict:
            raise StorageError("a verdict is given when the alert is closed")
        else:
            new["verdict"] = ""
        if len(note) > MAX_NOTE_CHARS or len(new["assignee"]) > 200:
            raise StorageError(f"a note is at most {MAX_NOTE_CHARS} characters, an assignee 200")
        row = {"time_ms": _now_ms(), "alert_id": alert_id, "institution_id": institution_id, "note": note, **new}
        self._append("triage_events", dict(row), actor, alert_id)
        return {**row, "user": actor.user}

    def states(self, alert_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Current state of several alerts (absent: new)."""
        if not alert_ids:
            return {}
        result = self.store.query(
            "SELECT alert_id, argMax(state, time) AS state, argMax(verdict, time) AS verdict, "
            "argMax(assignee, time) AS assignee, argMax(case_id, time) AS case_id FROM triage_events "
            "WHERE alert_id IN {ids:Array(String)} GROUP BY alert_id", {"ids": alert_ids})
        return {r["alert_id"]: r for r in result.dicts()}

    def closed_since(self, since_ms: int) -> list[dict[str, Any]]:
        """Alerts closed with a verdict after ``since_ms``, with the alert's detector, institution and
        evidence (for the detectors that learn from verdicts); ``changed_ms`` orders them."""
        closed = self.store.query(
            "SELECT alert_id, argMax(verdict, time) AS verdict, argMax(state, time) AS state, "
            "toUnixTimestamp64Milli(max(time)) AS changed_ms FROM triage_events GROUP BY alert_id "
            "HAVING state = 'closed' AND changed_ms > {since:Int64} ORDER BY changed_ms LIMIT 10000",
            {"since": int(since_ms)}).dicts()
        if not closed:
            return []
        alerts = {r["alert_id"]: r for r in self.store.query(
            "SELECT alert_id, detector, institution_id, entity, evidence FROM alerts "
            "WHERE alert_id IN {ids:Array(String)} LIMIT 1 BY alert_id", {"ids": [c["alert_id"] for c in closed]}).dicts()}
        return [{**alerts[c["alert_id"]], **c} for c in closed if c["alert_id"] in alerts]

    # --- cases -------------------------------------------------------------------------
    def case(self, case_id: str) -> dict[str, Any] | None:
        return self._latest("cases", "case_id", case_id)

    def save_case(self, actor: Actor, institution_id: str, *, case_id: str = "", title: str = "",
                  status: str = "open", campaign_id: str = "", alert_ids: list[str] | None = None,
                  note: str = "") -> dict[str, Any]:
        """Create a case (no ``case_id``) or append a change to one; returns its new state."""
        _check(status, CASE_STATES, "case status")
        current = self.case(case_id) if case_id else None
        if case_id and current is None:
            raise StorageError(f"no case {case_id!r}")
        if current is not None and current["institution_id"] != institution_id:
            raise StorageError("a case belongs to one institution")
        alerts = sorted(set((current or {}).get("alert_ids", [])) | set(alert_ids or []))
        row: dict[str, Any] = {"time_ms": _now_ms(), "case_id": case_id or uuid.uuid4().hex, "institution_id": institution_id,
               "title": title or (current or {}).get("title", "") or "case", "status": status,
               "campaign_id": campaign_id or (current or {}).get("campaign_id", ""), "alert_ids": alerts,
               "note": note[:MAX_NOTE_CHARS]}
        self._append("cases", dict(row), actor, row["case_id"])
        return row

    def cases(self, institution_id: str = "", status: str = "") -> list[dict[str, Any]]:
        """Current cases (of one institution, with one status; '' = any)."""
        sql = _current_sql("cases", "case_id", ("institution_id", "title", "status", "campaign_id", "alert_ids"),
                           "({i:String} = '' OR institution_id = {i:String}) AND ({s:String} = '' OR status = {s:String})",
                           limit=500)
        return self.store.query(sql, {"i": institution_id, "s": status}).dicts()

    # --- allowlist ---------------------------------------------------------------------
    def propose_entry(self, actor: Actor, *, entity: str, detector: str, institution_id: str, reason: str,
                      expires_ms: int, alert_id: str = "") -> dict[str, Any]:
        if not reason.strip():
            raise StorageError("an allowlist entry needs a reason")
        row: dict[str, Any] = {"time_ms": _now_ms(), "entry_id": uuid.uuid4().hex, "entity": entity, "detector": detector,
               "institution_id": institution_id, "reason": reason[:MAX_NOTE_CHARS], "expires_ms": int(expires_ms),
               "status": "proposed", "alert_id": alert_id}
        self._append("allowlist_entries", dict(row), actor, row["entry_id"])
        return row

    def entry(self, entry_id: str) -> dict[str, Any] | None:
        return self._latest("allowlist_entries", "entry_id", entry_id)

    def decide_entry(self, actor: Actor, entry_id: str, accept: bool) -> dict[str, Any]:
        """The operator accepts or rejects a proposed entry."""
        current = self.entry(entry_id)
        if current is None:
            raise StorageError(f"no allowlist entry {entry_id!r}")
        row = {k: current[k] for k in ("entry_id", "entity", "detector", "institution_id", "reason",
                                       "expires_ms", "alert_id")}
        row.update(time_ms=_now_ms(), status="accepted" if accept else "rejected")
        self._append("allowlist_entries", dict(row), actor, entry_id)
        return row

    def entries(self, status: str = "", alert_id: str = "") -> list[dict[str, Any]]:
        """Current allowlist entries, with one status and from one alert ('' = any)."""
        sql = _current_sql("allowlist_entries", "entry_id",
                           ("entity", "detector", "institution_id", "reason", "expires_ms", "status", "alert_id"),
                           "({s:String} = '' OR status = {s:String}) AND ({a:String} = '' OR alert_id = {a:String})",
                           limit=10_000)
        return self.store.query(sql, {"s": status, "a": alert_id}).dicts()

    def accepted_entries(self) -> list[dict[str, Any]]:
        """What workers apply: every accepted entry (expiry is checked on flow time by the allowlist)."""
        return self.entries("accepted")


def _datetime(time_ms: int) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{time_ms % 1000:03d}"
