"""Verdict replay: does an analyst's feedback make detection quieter without missing an attack?

``finsa backtest SCENARIO --verdicts`` (issue 16 item 4) meters a labelled scenario once and
replays its flows through one detection engine in flow-time order, cut at ``split`` (a fraction
of the scenario's span) into a **first part** and a **later part**:

1. the engine detects over the first part; its alerts are written to a store (in memory) as a
   worker writes them;
2. the engine is copied at the cut: the **control** copy goes on without feedback;
3. a simulated analyst closes every alert of the first part through the web view's own triage
   code (:class:`Analyst`: :func:`finsa.dashboards.soc.triage.triage_alert`, the alert row read
   back from the store as the ``POST /api/alerts/{id}/triage`` route reads it) with the verdict
   the ground truth gives (:func:`verdict_of`); a false positive proposes an allowlist entry
   (its expiry counted from the cut, in flow time), and the operator accepts every proposal
   through :func:`~finsa.dashboards.soc.triage.decide_entry` (what ``/work`` calls);
4. a :class:`~finsa.streams.feedback.FeedbackPoller` -- the worker's -- polls the store once: it
   applies the accepted entries to the other engine and hands it the closed alerts' verdicts
   (detectors that learn online learn them at its next batch);
5. both engines detect over the later part; their alerts are scored with
   :mod:`finsa.app.backtest`'s rules (:func:`tally`): false alerts per detector, and the episodes
   whose traffic reaches the later part that each detected there. A **new miss** is an episode
   the control detected in the later part and the verdicts run did not.

Nothing here filters alerts: the verdicts run is quieter only through what the product's own
feedback path changed in its engine.

>>> truth = {"attacks": [{"id": "a-1", "attack": "port_scan", "technique": "T1046", "attacker": "203.0.113.66",
...     "victims": [{"institution": "bank-a", "address": "192.0.2.10", "start_ms": 10_000, "end_ms": 20_000}]}]}
>>> eps, hostile = episodes(truth), hostile_addresses(truth)
>>> alert = {"institution_id": "bank-a", "technique": "T1046", "entity": "203.0.113.66", "target": "many",
...          "time_ms": 14_000}
>>> [verdict_of(dict(alert, **change), eps, hostile) for change in
...  ({}, {"technique": "anomaly"}, {"technique": "anomaly", "entity": "192.0.2.10"}, {"entity": "10.1.0.30"})]
['true_positive', 'true_positive', 'benign_true_positive', 'false_positive']
"""

from __future__ import annotations

import copy
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from finsa.app.backtest import Episode, episodes, matches, related
from finsa.app.offline import detect
from finsa.detectors.engine import VERDICTS, DetectionEngine
from finsa.errors import FinsaError
from finsa.wire import RecordBatch

__all__ = ["Analyst", "format_verdict_table", "hostile_addresses", "replay_verdicts", "split_ms_of", "tally", "verdict_of"]


def hostile_addresses(truth: dict) -> dict[str, frozenset[str]]:
    """Attack id -> the addresses that attack from it (attacker and flooding sources)."""
    return {a.get("id", ""): frozenset({a["attacker"], *a.get("sources", ())}) for a in truth["attacks"]}


def verdict_of(alert: dict[str, Any], eps: Sequence[Episode], hostile: dict[str, frozenset[str]]) -> str:
    """The verdict the ground truth gives an alert: ``true_positive`` when it matches an episode,
    or names an episode's attacker (or a flooding source) in its time range with another technique;
    ``benign_true_positive`` when it names a victim, domain or relay of an episode in its time
    range with another technique (real activity caused by an attack, of a host that is not
    hostile); else ``false_positive``."""
    if any(matches(alert, ep) for ep in eps):
        return "true_positive"
    near = [ep for ep in eps if related(alert, ep)]
    if not near:
        return "false_positive"
    if any(alert["entity"] in hostile.get(ep.attack_id, frozenset()) for ep in near):
        return "true_positive"
    return "benign_true_positive"


def split_ms_of(truth: dict, split: float) -> int:
    """The cut in flow time: ``split`` of the way from the scenario's start to its end."""
    if not 0.0 < split < 1.0:
        raise FinsaError(f"the split must lie strictly between 0 and 1, not {split}")
    return int(truth["start_ms"] + split * (truth["end_ms"] - truth["start_ms"]))


@dataclass
class Analyst:
    """Institution analysts and an operator working on one store, through the web view's code.

    ``close`` closes alerts with given verdicts (each by its institution's analyst);
    ``decide_proposals`` has the operator accept (or reject) every proposed allowlist entry.
    """

    store: Any
    verdicts: Counter = field(default_factory=Counter)
    accepted: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from finsa.dashboards.users import User, hash_password
        from finsa.storage.triage import TriageLog

        self.log = TriageLog(self.store)
        # simulated people never log in: a throw-away password at the lowest accepted cost
        self._hash = hash_password(secrets.token_urlsafe(16), n=2**10)
        self._user = User
        self.operator = User(username="replay-operator", role="operator", password_hash=self._hash)

    def close(self, verdicts: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
        """Close each alert (id -> verdict) as the web route does; the allowlist entries proposed."""
        from finsa.dashboards.soc.triage import parse_change, triage_alert

        if not verdicts:
            return []
        rows = self.store.query("SELECT alert_id, institution_id, entity, detector FROM alerts "
                                "WHERE alert_id IN {ids:Array(String)} LIMIT 1 BY alert_id",
                                {"ids": sorted(verdicts)}).dicts()
        proposed = []
        for row in sorted(rows, key=lambda r: r["alert_id"]):
            analyst = self._user(username=f"analyst-{row['institution_id']}", role="institution",
                                 institution=row["institution_id"], password_hash=self._hash)
            verdict = verdicts[row["alert_id"]]
            change = parse_change({"state": "closed", "verdict": verdict,
                                   "note": f"verdict replay: {verdict.replace('_', ' ')} by the ground truth"})
            done = triage_alert(self.log, analyst, row, change, now_ms)
            self.verdicts[verdict] += 1
            if done["proposed"] is not None:
                proposed.append(done["proposed"])
        return proposed

    def decide_proposals(self, accept: bool = True) -> list[dict[str, Any]]:
        """The operator accepts (or rejects) every proposed entry, as on ``/work``; returns the
        accepted ones."""
        from finsa.dashboards.soc.triage import decide_entry

        decision = {"decision": "accept" if accept else "reject"}
        decided = [decide_entry(self.log, self.operator, e["entry_id"], decision) for e in self.log.entries("proposed")]
        out = [e for e in decided if e["status"] == "accepted"]
        self.accepted += out
        return out


def tally(alerts: RecordBatch, eps: Sequence[Episode], hostile: dict[str, frozenset[str]]) -> dict[str, Any]:
    """Per detector, the false alerts (verdict ``false_positive``) of ``alerts`` (and the alerts
    themselves); the indexes of ``eps`` some alert matches; and how many alerts got each verdict."""
    false: Counter = Counter()
    false_rows: list[dict[str, Any]] = []
    verdicts: Counter = Counter()
    detected: set[int] = set()
    for alert in alerts.rows() if len(alerts) else []:
        verdict = verdict_of(alert, eps, hostile)
        verdicts[verdict] += 1
        if verdict == "false_positive":
            false[alert["detector"]] += 1
            false_rows.append({k: alert[k] for k in ("time_ms", "institution_id", "detector", "entity", "target")})
        detected.update(k for k, ep in enumerate(eps) if matches(alert, ep))
    return {"false": dict(false), "detected": detected, "verdicts": dict(verdicts), "alerts": len(alerts),
            "false_alerts": false_rows}


def _part(flows: RecordBatch, bindings: RecordBatch, engine: DetectionEngine, max_flows: int,
          batch_ms: int) -> RecordBatch:
    """Alerts of ``engine`` over a part's flows (in batches), then its ARP bindings."""
    alerts, _ = detect(flows, engine, max_flows, batch_ms)
    if len(bindings):
        arp = engine.process(bindings)
        if len(arp):
            alerts = RecordBatch.concat([alerts, arp], alerts.batch_id)
    return alerts


def _cut(batch: RecordBatch, column: str, split_ms: int) -> tuple[RecordBatch, RecordBatch]:
    early = batch.columns[column].astype(np.int64) < split_ms if len(batch) else np.zeros(0, bool)
    return batch.take(np.flatnonzero(early)), batch.take(np.flatnonzero(~early))


def replay_verdicts(truth: dict, flows: RecordBatch, bindings: RecordBatch, engine: DetectionEngine,
                    split_ms: int, max_flows: int = 5000, batch_ms: int = 1000, accept: bool = True) -> dict[str, Any]:
    """Run the replay of the module docstring over metered ``flows`` (and ARP ``bindings``) in
    time order; ``engine`` is used (and changed) as the verdicts run's. ``accept=False``: the
    operator rejects every proposal (the verdicts still reach the online learners), to tell the
    two effects apart. Returns the report."""
    from finsa.storage.backend import open_store
    from finsa.streams.feedback import FeedbackPoller

    eps, hostile = episodes(truth), hostile_addresses(truth)
    (flows1, flows2), (arp1, arp2) = _cut(flows, "last_seen_ms", split_ms), _cut(bindings, "first_seen_ms", split_ms)
    first = _part(flows1, arp1, engine, max_flows, batch_ms)
    control = copy.deepcopy(engine)  # the same learned state at the cut, no feedback
    store = open_store()
    try:
        store.migrate()
        if len(first):
            store.insert(first)
        poller = FeedbackPoller(store, engine)  # before the verdicts: it passes those given since
        analyst = Analyst(store)
        rows = first.rows() if len(first) else []
        proposed = analyst.close({a["alert_id"]: verdict_of(a, eps, hostile) for a in rows}, split_ms)
        accepted = analyst.decide_proposals(accept)
        learned_before = VERDICTS.total()
        applied = poller.poll()
        later_control = _part(flows2, arp2, control, max_flows, batch_ms)
        later = _part(flows2, arp2, engine, max_flows, batch_ms)
        learned = int(VERDICTS.total() - learned_before)
    finally:
        store.close()
    return _report(truth, eps, hostile, split_ms, {"first": first, "control": later_control, "verdicts": later},
                   {"verdicts": dict(analyst.verdicts), "proposed": len(proposed), "accepted": accepted,
                    "applied": applied, "learned": learned}, len(flows1), len(flows2))


def _report(truth: dict, eps: list[Episode], hostile: dict[str, frozenset[str]], split_ms: int,
            runs: dict[str, RecordBatch], feedback: dict[str, Any], flows1: int, flows2: int) -> dict[str, Any]:
    scored = {name: tally(alerts, eps, hostile) for name, alerts in runs.items()}
    later_eps = [k for k, ep in enumerate(eps) if ep.end_ms >= split_ms]
    found = {name: sorted(k for k in scored[name]["detected"] if k in later_eps) for name in ("control", "verdicts")}
    new_misses = [k for k in found["control"] if k not in found["verdicts"]]
    detectors = sorted({*scored["first"]["false"], *scored["control"]["false"], *scored["verdicts"]["false"]})
    per_detector = [{"detector": d, **{name: scored[name]["false"].get(d, 0) for name in runs}} for d in detectors]

    def describe(k: int) -> dict[str, Any]:
        ep = eps[k]
        return {"id": ep.attack_id, "attack": ep.attack, "institution": ep.institution,
                "control": k in found["control"], "verdicts": k in found["verdicts"]}

    return {"split_ms": split_ms, "start_ms": truth["start_ms"], "end_ms": truth["end_ms"],
            "flows": {"first": flows1, "later": flows2},
            "alerts": {name: s["alerts"] for name, s in scored.items()},
            "false": {name: sum(s["false"].values()) for name, s in scored.items()},
            "false_by_detector": per_detector,
            "first_verdicts": feedback["verdicts"], "proposed": feedback["proposed"],
            "accepted": [{k: e[k] for k in ("entity", "detector", "institution_id", "expires_ms")}
                         for e in feedback["accepted"]],
            "applied": feedback["applied"], "verdicts_learned": feedback["learned"],
            "later_episodes": [describe(k) for k in later_eps],
            "detected": {name: len(v) for name, v in found.items()},
            "new_misses": [describe(k) for k in new_misses],
            "later_false_with_verdicts": scored["verdicts"]["false_alerts"]}


def format_verdict_table(report: dict[str, Any], max_entries: int = 20) -> str:
    """The replay's report as text: per-detector false alerts, episodes, the accepted entries."""
    span_s = (report["end_ms"] - report["start_ms"]) / 1000
    cut_s = (report["split_ms"] - report["start_ms"]) / 1000
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(report["first_verdicts"].items())) or "none"
    lines = [f"verdict replay: cut at +{cut_s:.0f} s of {span_s:.0f} s; first part {report['flows']['first']} flows, "
             f"{report['alerts']['first']} alerts closed ({verdicts}); later part {report['flows']['later']} flows",
             f"{'false alerts':<16} {'first part':>10} {'later, control':>15} {'later, verdicts':>16}"]
    for row in [*report["false_by_detector"], {"detector": "total", **report["false"]}]:
        lines.append(f"{row['detector']:<16} {row['first']:>10} {row['control']:>15} {row['verdicts']:>16}")
    n = len(report["later_episodes"])
    lines.append(f"episodes reaching the later part: {n}; detected there: control {report['detected']['control']}, "
                 f"verdicts {report['detected']['verdicts']}; new misses: {len(report['new_misses'])}")
    still = report["later_false_with_verdicts"]
    for a in still[:max_entries]:
        lines.append(f"  still false with verdicts: {a['institution_id']:<8} {a['detector']:<12} {a['entity']} -> {a['target']}")
    if len(still) > max_entries:
        lines.append(f"  ... and {len(still) - max_entries} more")
    for ep in report["new_misses"]:
        lines.append(f"  MISSED with verdicts: {ep['id']} ({ep['attack']} at {ep['institution']})")
    lines.append(f"allowlist: {report['proposed']} proposed, {len(report['accepted'])} accepted by the operator, "
                 f"{report['applied']} applied by the feedback poller; {report['verdicts_learned']} verdicts "
                 "learned by online detectors")
    same = sorted(Counter((e["institution_id"], e["detector"], e["entity"]) for e in report["accepted"]).items(),
                  key=lambda item: (-item[1], item[0]))
    for (inst, detector, entity), count in same[:max_entries]:
        lines.append(f"  accepted: {inst:<8} {detector:<12} {entity:<16} ({count} alert{'s' * (count > 1)})")
    if len(same) > max_entries:
        lines.append(f"  ... and {len(same) - max_entries} more entities (--format json lists them all)")
    return "\n".join(lines)
