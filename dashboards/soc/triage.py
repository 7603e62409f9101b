"""Who may triage what, and what a verdict sets in motion.

Roles (:mod:`finsa.dashboards.users`):

* an **institution** analyst changes the triage state of its own institution's alerts (state,
  verdict, assignee, note), groups them in cases (a campaign that hit it can become a case) and
  escalates a case to the regulator;
* the **operator** accepts or rejects allowlist entries;
* the **regulator** reads the escalated cases of every institution (and changes nothing here).

Closing an alert as ``false_positive`` proposes an allowlist entry for its entity (an address),
its detector and its institution, with the analyst's note as the reason and an expiry
(:data:`DEFAULT_EXPIRY_DAYS`); once the operator accepts it, every worker applies it
(:mod:`finsa.streams.feedback`).

>>> parse_change({"state": "closed", "verdict": "false_positive", "note": "backup job"})["verdict"]
'false_positive'
>>> try:
...     parse_change({"state": "done"})
... except TriageRefused as exc:
...     print(exc)
state must be one of new, acknowledged, in_progress, escalated, closed
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from finsa.dashboards.users import User
from finsa.errors import FinsaError
from finsa.storage.triage import CASE_STATES, STATES, VERDICTS, Actor, TriageLog

__all__ = ["TriageRefused", "parse_change", "triage_alert", "DEFAULT_EXPIRY_DAYS", "actor_of", "save_case",
           "decide_entry"]

DEFAULT_EXPIRY_DAYS = 30
_CHANGE_KEYS = {"state", "verdict", "assignee", "note", "case_id", "propose_allowlist", "expiry_days"}


class TriageRefused(FinsaError):
    """The change is not allowed or not valid (``status``: the HTTP answer, 400 or 403)."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


def actor_of(user: User) -> Actor:
    return Actor(user.username, user.role, user.principal)


def _text(body: Mapping[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise TriageRefused(f"{key} must be text of at most {limit} characters")
    return value


def parse_change(body: Any) -> dict[str, Any]:
    """A triage request body checked: known keys, known states and verdicts."""
    if not isinstance(body, dict):
        raise TriageRefused("the body must be a JSON object")
    unknown = sorted(set(body) - _CHANGE_KEYS)
    if unknown:
        raise TriageRefused(f"unknown field(s): {', '.join(unknown)}")
    change = {k: _text(body, k, 4000) for k in ("state", "verdict", "assignee", "note", "case_id")}
    if change["state"] is not None and change["state"] not in STATES:
        raise TriageRefused(f"state must be one of {', '.join(STATES)}")
    if change["verdict"] not in (None, "", *VERDICTS):
        raise TriageRefused(f"verdict must be one of {', '.join(VERDICTS)}")
    if change["state"] == "closed" and not change["verdict"]:
        raise TriageRefused("closing an alert needs a verdict")
    days = body.get("expiry_days", DEFAULT_EXPIRY_DAYS)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 365:
        raise TriageRefused("expiry_days must be a whole number of days, 1..365")
    propose = body.get("propose_allowlist", True)
    if not isinstance(propose, bool):
        raise TriageRefused("propose_allowlist must be true or false")
    return {**change, "note": change["note"] or "", "expiry_days": days, "propose_allowlist": propose}


def _check_owner(user: User, institution_id: str) -> None:
    if user.role != "institution":
        raise TriageRefused("only an institution's analyst triages its alerts", 403)
    if user.institution != institution_id:
        raise TriageRefused("an analyst triages its own institution's alerts only", 403)


def _allow_entity(entity: str) -> str | None:
    try:
        ip = ipaddress.ip_address(entity.strip())
    except ValueError:
        return None
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


def triage_alert(log: TriageLog, user: User, alert: Mapping[str, Any], change: Mapping[str, Any],
                 now_ms: int) -> dict[str, Any]:
    """Apply a checked change to ``alert`` (a stored alert row) for ``user``; the new state, and
    the allowlist entry a false-positive verdict proposed (``proposed``, or None)."""
    _check_owner(user, alert["institution_id"])
    actor = actor_of(user)
    if change.get("case_id"):
        case = log.case(change["case_id"])
        if case is None or case["institution_id"] != user.institution:
            raise TriageRefused("no such case of your institution", 404)
    state = log.change_alert(alert["alert_id"], alert["institution_id"], actor, state=change.get("state"),
                             verdict=change.get("verdict") if change.get("state") == "closed" else None,
                             assignee=change.get("assignee"), note=change.get("note", ""),
                             case_id=change.get("case_id"))
    proposed = None
    entity = _allow_entity(alert["entity"])
    if (state["state"] == "closed" and state["verdict"] == "false_positive" and change.get("propose_allowlist", True)
            and entity is not None):
        reason = change.get("note") or f"false positive (alert {alert['alert_id']})"
        proposed = log.propose_entry(actor, entity=entity, detector=alert["detector"],
                                     institution_id=alert["institution_id"], reason=reason,
                                     expires_ms=now_ms + change.get("expiry_days", DEFAULT_EXPIRY_DAYS) * 86_400_000,
                                     alert_id=alert["alert_id"])
    return {"state": state, "proposed": proposed}


def save_case(log: TriageLog, user: User, body: Any, readable_alerts: set[str], campaign_ok: bool) -> dict[str, Any]:
    """Create or change a case for an institution's analyst. ``readable_alerts``: the ids among the
    body's ``alert_ids`` the user can read; ``campaign_ok``: the named campaign hit the user's institution."""
    if user.role != "institution":
        raise TriageRefused("cases belong to an institution: only its analysts make them", 403)
    if not isinstance(body, dict) or sorted(set(body) - {"case_id", "title", "status", "campaign_id", "alert_ids", "note"}):
        raise TriageRefused("fields: case_id, title, status, campaign_id, alert_ids, note")
    alert_ids = body.get("alert_ids", [])
    if not isinstance(alert_ids, list) or len(alert_ids) > 1000 or not all(isinstance(a, str) for a in alert_ids):
        raise TriageRefused("alert_ids must be a list of alert ids")
    if set(alert_ids) - readable_alerts:
        raise TriageRefused("an alert of the case is not one of your institution's", 403)
    if body.get("campaign_id") and not campaign_ok:
        raise TriageRefused("that campaign did not hit your institution", 403)
    status = body.get("status", "open")
    if status not in CASE_STATES:
        raise TriageRefused(f"status must be one of {', '.join(CASE_STATES)}")
    case_id = _text(body, "case_id", 64) or ""
    if case_id:
        current = log.case(case_id)
        if current is None or current["institution_id"] != user.institution:
            raise TriageRefused("no such case of your institution", 404)
    return log.save_case(actor_of(user), user.institution, case_id=case_id, title=_text(body, "title", 200) or "",
                         status=status, campaign_id=_text(body, "campaign_id", 64) or "", alert_ids=alert_ids,
                         note=_text(body, "note", 4000) or "")


def decide_entry(log: TriageLog, user: User, entry_id: str, body: Any) -> dict[str, Any]:
    """The operator accepts or rejects a proposed allowlist entry."""
    if user.role != "operator":
        raise TriageRefused("only the operator accepts allowlist entries", 403)
    decision = body.get("decision") if isinstance(body, dict) else None
    if decision not in ("accept", "reject"):
        raise TriageRefused("decision must be accept or reject")
    if log.entry(entry_id) is None:
        raise TriageRefused("no such allowlist entry", 404)
    return log.decide_entry(actor_of(user), entry_id, decision == "accept")
