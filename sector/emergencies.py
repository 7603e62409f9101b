"""Emergencies and data-quality flags: an institution going dark, a sensor gone silent or wrong.

* ``dark_flows``: an institution's flows per minute fall below ``collapse_ratio`` of its baseline
  (an EWMA of past minutes, at least ``min_baseline_flows``) for ``dark_steps`` minutes in a row.
  The baseline does not learn while the volume is collapsed; the emergency clears when the volume
  is back above half the baseline.
* ``heartbeat_lost``: a sensor whose heartbeats stopped arriving for more than
  ``heartbeat_timeout_ms``.
* data quality, severity 2: ``no_data`` (a sensor that sends heartbeats but whose flow counter has
  not moved for ``no_data_ms``) and ``clock_offset`` (heartbeat time and arrival time more than
  ``clock_offset_ms`` apart).

Every raise and every clear is one :class:`Emergency` row (``active`` true, then false), with a
deterministic id per episode. Minutes are closed by :meth:`HealthWatch.check` in flow time; the
arrival time of a heartbeat is what the worker passes (its clock), defaulting to the heartbeat's own
time, so replays stay deterministic.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from finsa.institutions import Registry

__all__ = ["Emergency", "HealthWatch", "QUALITY_KINDS"]

QUALITY_KINDS = ("no_data", "clock_offset")


@dataclass(frozen=True)
class Emergency:
    emergency_id: str
    time_ms: int
    institution_id: str
    sensor_id: str
    kind: str  # dark_flows | heartbeat_lost | no_data | clock_offset
    severity: int
    active: bool
    why: str
    evidence: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def quality(self) -> bool:
        return self.kind in QUALITY_KINDS

    def row(self) -> dict[str, Any]:
        return {"emergency_id": self.emergency_id, "time_ms": self.time_ms, "institution_id": self.institution_id,
                "sensor_id": self.sensor_id, "kind": self.kind, "severity": self.severity,
                "active": int(self.active), "why": self.why,
                "evidence": json.dumps(self.evidence, sort_keys=True, separators=(",", ":"))}


@dataclass
class _Volume:
    baseline: float | None = None
    dark_run: int = 0
    last_count: int = 0
    pending: dict[int, int] = field(default_factory=dict)


@dataclass
class _Sensor:
    arrival_ms: int
    offset_ms: int
    flows: int
    flows_changed_ms: int


class HealthWatch:
    """Flow-volume and heartbeat watch; see the module docstring."""

    def __init__(self, registry: Registry, step_ms: int = 60_000, collapse_ratio: float = 0.1,
                 min_baseline_flows: float = 20.0, baseline_alpha: float = 0.1, dark_steps: int = 2,
                 heartbeat_timeout_ms: int = 120_000, clock_offset_ms: int = 60_000,
                 no_data_ms: int = 300_000, max_fill_steps: int = 120) -> None:
        self.use_registry(registry)
        self.step_ms, self.collapse_ratio, self.min_baseline = step_ms, collapse_ratio, min_baseline_flows
        self.alpha, self.dark_steps, self.max_fill_steps = baseline_alpha, dark_steps, max_fill_steps
        self.heartbeat_timeout_ms, self.clock_offset_ms, self.no_data_ms = heartbeat_timeout_ms, clock_offset_ms, no_data_ms
        self.volumes: dict[str, _Volume] = {}
        self.sensors: dict[tuple[str, str], _Sensor] = {}
        self.closed_step: int | None = None
        self.active: dict[tuple[str, str, str], Emergency] = {}

    def use_registry(self, registry: Registry) -> None:
        """Institutions' criticality from now on (baselines and sensors stay)."""
        self.criticality = {i.id: i.criticality for i in registry.institution}

    def observe_flows(self, institution_ids: np.ndarray, time_ms: np.ndarray) -> None:
        """Count flows per institution and minute (vectorised over the batch)."""
        if len(institution_ids) == 0:
            return
        insts, inst_code = np.unique(institution_ids.astype(str), return_inverse=True)
        steps = np.asarray(time_ms, dtype=np.int64) // self.step_ms
        base = int(steps.min())
        span = int(steps.max()) - base + 1
        pairs, counts = np.unique(inst_code.astype(np.int64) * span + (steps - base), return_counts=True)
        for pair, count in zip(pairs.tolist(), counts.tolist()):
            vol = self.volumes.setdefault(str(insts[pair // span]), _Volume())
            step = base + pair % span
            if self.closed_step is None or step > self.closed_step:
                vol.pending[step] = vol.pending.get(step, 0) + count

    def observe_heartbeats(self, columns: Mapping[str, np.ndarray], arrival_ms: int | None = None) -> None:
        for i in range(len(columns["time_ms"])):
            sent = int(columns["time_ms"][i])
            arrived = sent if arrival_ms is None else int(arrival_ms)
            key = (str(columns["institution_id"][i]), str(columns["sensor_id"][i]))
            flows = int(columns["flows"][i])
            old = self.sensors.get(key)
            changed = arrived if old is None or flows != old.flows else old.flows_changed_ms
            self.sensors[key] = _Sensor(arrived, arrived - sent, flows, changed)

    def check(self, now_ms: int) -> list[Emergency]:
        """Close finished minutes and compare every watch with ``now_ms``; raises and clears."""
        wanted: dict[tuple[str, str, str], tuple[int, str, dict]] = {}
        self._volume_checks(now_ms, wanted)
        for (inst, sensor), s in sorted(self.sensors.items()):
            silent = now_ms - s.arrival_ms
            if silent > self.heartbeat_timeout_ms:
                wanted[(inst, sensor, "heartbeat_lost")] = (
                    4, f"no heartbeat from sensor {sensor} for {silent // 1000} s", {"silent_ms": silent})
            elif now_ms - s.flows_changed_ms > self.no_data_ms:
                wanted[(inst, sensor, "no_data")] = (
                    2, f"sensor {sensor} reports no new flows for {(now_ms - s.flows_changed_ms) // 1000} s",
                    {"flows": s.flows})
            if abs(s.offset_ms) > self.clock_offset_ms:
                wanted[(inst, sensor, "clock_offset")] = (
                    2, f"sensor {sensor} clock is {s.offset_ms / 1000:+.0f} s off its arrival time",
                    {"offset_ms": s.offset_ms})
        return self._transitions(now_ms, wanted)

    def _volume_checks(self, now_ms: int, wanted: dict) -> None:
        last = now_ms // self.step_ms - 1
        if self.closed_step is None:
            firsts = [min(v.pending) for v in self.volumes.values() if v.pending]
            self.closed_step = (min(firsts) - 1) if firsts else last
        first = max(self.closed_step + 1, last - self.max_fill_steps + 1)
        for inst in sorted(self.volumes):
            vol = self.volumes[inst]
            for step in range(first, last + 1):
                vol.last_count = vol.pending.pop(step, 0)
                self._learn(vol, vol.last_count)
            count = vol.last_count
            vol.pending = {k: v for k, v in vol.pending.items() if k > last}
            if vol.dark_run >= self.dark_steps:
                wanted[(inst, "", "dark_flows")] = (
                    5 if self.criticality.get(inst, 3) >= 4 else 4,
                    f"{inst} flows collapsed to {count}/min against a baseline of {vol.baseline:.0f}/min",
                    {"flows_per_min": count, "baseline_per_min": round(vol.baseline or 0.0, 2),
                     "dark_minutes": vol.dark_run})
        self.closed_step = max(self.closed_step, last)

    def _learn(self, vol: _Volume, count: int) -> None:
        base = vol.baseline
        if base is not None and base >= self.min_baseline and count < self.collapse_ratio * base:
            vol.dark_run += 1
            return
        if vol.dark_run and base is not None and count < 0.5 * base:
            vol.dark_run += 1  # still recovering: stay dark, keep the baseline
            return
        vol.dark_run = 0
        vol.baseline = float(count) if base is None else base + self.alpha * (count - base)

    def _transitions(self, now_ms: int, wanted: dict) -> list[Emergency]:
        out = []
        for key in sorted(set(self.active) - set(wanted)):
            old = self.active.pop(key)
            out.append(Emergency(old.emergency_id, now_ms, old.institution_id, old.sensor_id, old.kind,
                                 old.severity, False, f"cleared: {old.why}", old.evidence))
        for key in sorted(set(wanted) - set(self.active)):
            inst, sensor, kind = key
            severity, why, evidence = wanted[key]
            eid = "em-" + hashlib.blake2b(f"{kind}|{inst}|{sensor}|{now_ms}".encode(), digest_size=8).hexdigest()
            self.active[key] = Emergency(eid, now_ms, inst, sensor, kind, severity, True, why, evidence)
            out.append(self.active[key])
        return out

    def active_by_institution(self) -> dict[str, list[Emergency]]:
        out: dict[str, list[Emergency]] = {}
        for e in self.active.values():
            out.setdefault(e.institution_id, []).append(e)
        return out
