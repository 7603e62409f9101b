"""Fixtures for the dashboards tests: a real store (chdb in a tmp dir) with a small, known sector.

Four institutions: bank-a is attacked by one source with three detectors, ins-c by the same
source, pay-d has one low alert from another source, bank-q is quiet (its only alert is two
hours old). Flows for every institution in the last ten minutes.
"""

from __future__ import annotations

import time
from pathlib import Path

from types import SimpleNamespace

import numpy as np
import pytest

from finsa.institutions import parse_registry
from finsa.storage.backend import open_store
from finsa.wire import ALERT, FLOW, RecordBatch

NOW_MS = int(time.time() * 1000)
MINUTE_MS = 60_000
ATTACKER = "203.0.113.66"
LONE_SOURCE = "198.51.100.200"

REGISTRY = parse_registry({"institution": [
    {"id": "bank-a", "name": "Alpine Bank", "subsector": "bank", "region": "north",
     "criticality": 5, "networks": ["10.1.0.0/16"]},
    {"id": "bank-q", "name": "Quiet Savings", "subsector": "bank", "region": "south",
     "criticality": 3, "networks": ["10.2.0.0/16"]},
    {"id": "ins-c", "name": "Coastal Insurance", "subsector": "insurance", "region": "east",
     "criticality": 2, "networks": ["10.3.0.0/16"]},
    {"id": "pay-d", "name": "Delta Payments", "subsector": "payment", "region": "west",
     "criticality": 3, "networks": ["10.4.0.0/16"]},
]})


def _open_store(path: Path):
    store = open_store(data_dir=path)
    store.migrate()
    return store


def _alerts() -> RecordBatch:
    """The attacker hits bank-a (3 detectors, high/critical) and ins-c; a lone low alert at
    pay-d; bank-q has only an alert from two hours ago; one alert is delivered twice."""
    rows = []
    detectors = [("portscan", "T1046", 4), ("bruteforce", "T1110", 5), ("beacon", "T1071", 4)]
    for k in range(9):
        det, tech, sev = detectors[k % 3]
        rows.append((f"a-{k}", NOW_MS - (k + 1) * MINUTE_MS, "bank-a", ATTACKER, f"10.1.0.{k}", det, tech, sev))
    for k in range(3):
        rows.append((f"c-{k}", NOW_MS - (k + 2) * MINUTE_MS, "ins-c", ATTACKER, "10.3.0.5:22",
                     "bruteforce", "T1110", 4))
    rows.append(("d-0", NOW_MS - 3 * MINUTE_MS, "pay-d", LONE_SOURCE, "10.4.0.9", "dns_tunnel", "T1071.004", 2))
    rows.append(("q-old", NOW_MS - 120 * MINUTE_MS, "bank-q", "192.0.2.50", "10.2.0.1", "portscan", "T1046", 5))
    rows.append(rows[0])  # redelivered: same alert_id, counted once
    ids, times, inst, entity, target, det, tech, sev = map(list, zip(*rows))
    return ALERT.make_batch({
        "alert_id": ids, "time_ms": times, "first_seen_ms": [t - MINUTE_MS for t in times],
        "institution_id": inst, "entity": entity, "entity_kind": ["src_ip"] * len(rows),
        "target": target, "detector": det, "technique": tech, "severity": sev,
        "score": [1.0] * len(rows), "confidence": [0.9] * len(rows), "evidence": ["{}"] * len(rows)})


def _flows() -> RecordBatch:
    n = 40
    inst = np.array(["bank-a", "bank-q", "ins-c", "pay-d"] * (n // 4), dtype=object)
    first = NOW_MS - (np.arange(n) % 10) * MINUTE_MS
    return FLOW.make_batch({
        "flow_id": np.arange(n), "first_seen_ms": first, "last_seen_ms": first + 500,
        "institution_id": inst, "sensor_id": "s1", "ip_version": 4, "protocol": 6,
        "src_ip": [ATTACKER] * n, "dst_ip": [f"10.{1 + k % 4}.0.{k}" for k in range(n)],
        "src_port": 40000 + np.arange(n), "dst_port": 443, "src2dst_packets": 3,
        "src2dst_bytes": np.full(n, 1000), "dst2src_packets": 2, "dst2src_bytes": np.full(n, 500)})


@pytest.fixture(scope="session")
def sector() -> SimpleNamespace:
    """What the loaded store holds: its reference time and the notable sources."""
    return SimpleNamespace(now_ms=NOW_MS, attacker=ATTACKER, lone_source=LONE_SOURCE, registry=REGISTRY)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding the sector above, its flows and its alerts (shared by a module).

    Module scope, not session: chdb opens one store folder per process at a time, so a store
    held open for the whole session would keep every later test module from opening its own.
    """
    s = _open_store(tmp_path_factory.mktemp("store"))
    s.load_institutions(REGISTRY)
    s.insert(_flows())
    s.insert(_alerts())
    yield s
    s.close()


@pytest.fixture(scope="module", autouse=True)
def view_clock_from_now_ms():
    """The web view's clock starts at NOW_MS with each module, however long the session ran before.

    The loaded alerts are minutes older than NOW_MS (taken when this file was imported) and the
    threat levels count the 15 minutes before the view's clock: a module run 12 minutes into a
    serial session would otherwise see pay-d's alert already out of its window.
    """
    from finsa.dashboards import webview

    real = webview._now_ms
    offset_ms = real() - NOW_MS
    webview._now_ms = lambda: real() - offset_ms
    yield
    webview._now_ms = real
