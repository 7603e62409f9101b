"""Runs a set of detectors over flow batches and returns one ALERT batch per flow batch.

The engine is what the stream layer calls: ``DetectionEngine().process(flows)`` validates the
rows (a row with an impossible time, no institution, no packet, or NaN is skipped and counted in
``finsa_detector_rows_skipped_total{reason}``), cuts a huge batch into chunks, runs every
detector, counts alerts in ``finsa_detector_alerts_total{detector}`` (and a detector that raises
in ``finsa_detector_errors_total{detector}``, the others still run), and returns the alerts as a
:data:`finsa.wire.ALERT` batch, possibly empty. The alert batch id is derived from the flow batch
id, so a redelivered flow batch gives an alert batch with the same id. The engine pickles with
all its detectors' state (checkpoint it between batches).

>>> from finsa.wire import FLOW
>>> engine = DetectionEngine()
>>> len(engine.process(FLOW.make_batch({}))), [d.name for d in engine.detectors]
(0, ['portscan', 'synflood', 'bruteforce', 'anomaly'])
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from finsa.detectors.base import Detector
from finsa.detectors.registry import DEFAULT_NAMES, create
from finsa.metrics import REGISTRY
from finsa.wire import ALERT, FLOW, RecordBatch

__all__ = ["DetectionEngine", "default_detectors", "valid_rows"]

SKIPPED = REGISTRY.counter("finsa_detector_rows_skipped_total", "Flow rows the detectors skipped", ["reason"])
ALERTS = REGISTRY.counter("finsa_detector_alerts_total", "Alerts raised", ["detector"])
ERRORS = REGISTRY.counter("finsa_detector_errors_total", "Batches a detector failed on", ["detector"])
FLOWS = REGISTRY.counter("finsa_detector_flows_total", "Flow rows given to the detectors")

#: Flow times outside [2000-01-01, 2100-01-01) are refused.
MIN_TIME_MS, MAX_TIME_MS = 946_684_800_000, 4_102_444_800_000
MAX_FLOW_DURATION_MS = 7 * 86_400_000
MAX_PACKETS, MAX_BYTES = 10**12, 10**15
MAX_CHUNK_ROWS = 262_144


def default_detectors(seed: int = 0) -> list[Detector]:
    """The standard detector set, each with its default hyperparameters."""
    return [create(name, seed=seed) for name in DEFAULT_NAMES]


def _finite_ints(flows: RecordBatch) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns cast to their wire types, and the rows that held NaN/inf where a number belongs."""
    cols, bad = dict(flows.columns), np.zeros(len(flows), dtype=bool)
    for f in FLOW.fields:
        col = cols.get(f.name)
        if col is None:
            cols[f.name] = f.empty(len(flows))
        elif f.kind not in ("ip", "str") and col.dtype.kind == "f":
            finite = np.isfinite(col)
            bad |= ~finite
            cols[f.name] = f.coerce(np.where(finite, col, 0))
    return cols, bad


def valid_rows(flows: RecordBatch) -> tuple[RecordBatch, dict[str, int]]:
    """The batch without its bad rows, and how many rows were skipped per reason."""
    cols, not_finite = _finite_ints(flows)
    first, last = cols["first_seen_ms"].astype(np.int64), cols["last_seen_ms"].astype(np.int64)
    reasons = {
        "not_finite": not_finite,
        "no_institution": cols["institution_id"] == "",
        "bad_time": ((first < MIN_TIME_MS) | (first >= MAX_TIME_MS) | (last < first)
                     | (last - first > MAX_FLOW_DURATION_MS)),
        "bad_counts": ((cols["src2dst_packets"] == 0) | (cols["src2dst_packets"] > MAX_PACKETS)
                       | (cols["dst2src_packets"] > MAX_PACKETS) | (cols["src2dst_bytes"] > MAX_BYTES)
                       | (cols["dst2src_bytes"] > MAX_BYTES)),
        "no_address": ~cols["src_ip"].any(axis=1) | ~cols["dst_ip"].any(axis=1),
    }
    bad = np.zeros(len(flows), dtype=bool)
    counts = {}
    for reason, mask in reasons.items():
        fresh = mask & ~bad  # a row is counted once, under its first reason
        if fresh.any():
            counts[reason] = int(fresh.sum())
        bad |= mask
    clean = RecordBatch(FLOW, cols, flows.batch_id)
    return (clean.take(~bad, flows.batch_id) if bad.any() else clean), counts


class DetectionEngine:
    """Every enabled detector over each flow batch; see the module docstring."""

    def __init__(self, detectors: list[Detector] | None = None, seed: int = 0) -> None:
        self.seed = seed
        self.detectors = list(detectors) if detectors is not None else default_detectors(seed)
        names = [d.name for d in self.detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")

    def process(self, flows: RecordBatch) -> RecordBatch:
        """Alerts raised by this flow batch (an ALERT batch, possibly empty)."""
        rows: list[dict[str, Any]] = []
        if len(flows):
            FLOWS.inc(len(flows))
            clean, skipped = valid_rows(flows)
            for reason, count in skipped.items():
                SKIPPED.inc(count, reason=reason)
            for start in range(0, len(clean), MAX_CHUNK_ROWS):
                chunk = clean if len(clean) <= MAX_CHUNK_ROWS else clean.take(
                    np.arange(start, min(start + MAX_CHUNK_ROWS, len(clean))), flows.batch_id)
                rows.extend(self._run(chunk))
        alert_batch_id = hashlib.blake2b(b"alerts:" + flows.batch_id, digest_size=16).digest()
        if not rows:
            return ALERT.make_batch({}, batch_id=alert_batch_id)
        rows.sort(key=lambda r: (r["time_ms"], r["detector"], r["alert_id"]))
        columns = {name: [r[name] for r in rows] for name in ALERT.names}
        return ALERT.make_batch(columns, batch_id=alert_batch_id)

    def _run(self, chunk: RecordBatch) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for detector in self.detectors:
            try:
                found = detector.process(chunk)
            except Exception:  # noqa: BLE001 - one detector's bug must not stop the others
                ERRORS.inc(detector=detector.name)
                continue
            if found:
                ALERTS.inc(len(found), detector=detector.name)
                out.extend(found)
        return out
