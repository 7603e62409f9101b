"""Collectors and detectors run offline, fed the way the live pipeline feeds them.

:func:`meter_sources` meters several captures side by side (each with its own
:class:`~finsa.collectors.meter.flowmeter.FlowMeter`, profile ``agent`` by default, as the collector agent
does) and merges their flows in flow-end-time order (``last_seen_ms``, ties kept in capture
order), which is the order flows reach a stream worker. :func:`flow_batches` cuts that stream
into batches of at most ``max_flows`` flows spanning at most ``batch_ms`` of flow time (default
1 s, like the replayer's per-second coalescing), and :func:`detect` hands them to a
:class:`~finsa.detectors.engine.DetectionEngine` one by one and collects the alerts.
:func:`make_engine` builds the engine from an operator config file (and the institutions
registry) or the default detector set. :func:`run_sector` then feeds a
:class:`~finsa.sector.picture.SectorPicture` the alerts (and flows) minute by minute of flow
time, ticking at the end of each minute, and keeps every campaign and warning it concluded.

>>> import numpy as np
>>> from finsa.wire import FLOW
>>> flows = FLOW.make_batch({"last_seen_ms": [0, 400, 999, 1000, 1001, 2500]})
>>> [len(b) for b in flow_batches(flows, max_flows=2, batch_ms=1000)]
[2, 1, 2, 1]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from finsa.collectors.meter.flowmeter import meter_capture
from finsa.collectors.replay import CaptureSource
from finsa.detectors.engine import DetectionEngine
from finsa.errors import CaptureError, FinsaError
from finsa.wire import ALERT, ARP, FLOW, RecordBatch

if TYPE_CHECKING:
    from finsa.sector.picture import SectorPicture

__all__ = ["CaptureSource", "OfflineError", "OfflineResult", "SectorRun", "meter_sources", "flow_batches",
           "detect", "make_engine", "scenario_sources", "run_offline", "run_sector"]


class OfflineError(FinsaError):
    """An offline run could not start: unreadable capture, config or scenario."""


@dataclass
class OfflineResult:
    """What an offline run gave: every flow metered and every alert raised (time order)."""

    flows: RecordBatch
    alerts: RecordBatch
    batches: int


def _merged(sources: Sequence[CaptureSource], read: Any, rtype: Any, time_column: str) -> RecordBatch:
    """``read(source, sensor_id)``'s batches of every capture, in ``time_column`` order; a capture
    that cannot be read raises OfflineError naming it."""
    parts: list[RecordBatch] = []
    for src in sources:
        try:
            parts.extend(read(src, src.sensor_id or f"{src.institution_id}-offline"))
        except OSError as exc:
            raise OfflineError(f"{src.path}: cannot read: {exc.strerror or exc}") from None
        except CaptureError as exc:
            raise OfflineError(str(exc)) from None
    parts = [p for p in parts if len(p)]
    if not parts:
        return rtype.make_batch({})
    merged = RecordBatch.concat(parts)
    order = np.argsort(merged.columns[time_column], kind="stable")
    return merged.take(order, _derived(rtype.name.encode(), [p.batch_id for p in parts]))


def meter_sources(sources: Sequence[CaptureSource], profile: str = "agent") -> RecordBatch:
    """Flows of every capture, merged by flow end time (what a worker receives, in order)."""
    return _merged(sources, lambda src, sensor: meter_capture(src.path, profile, institution_id=src.institution_id,
                                                              sensor_id=sensor), FLOW, "last_seen_ms")


def flow_batches(flows: RecordBatch, max_flows: int = 5000, batch_ms: int = 1000) -> Iterator[RecordBatch]:
    """Consecutive batches (flows sorted by ``last_seen_ms``): aligned ``batch_ms`` buckets, split at ``max_flows``."""
    if max_flows < 1 or batch_ms < 1:
        raise ValueError("max_flows and batch_ms must be positive")
    if not len(flows):
        return
    bucket = flows.columns["last_seen_ms"].astype(np.int64) // batch_ms
    edges = np.flatnonzero(np.diff(bucket)) + 1
    bounds = [0, *edges.tolist(), len(flows)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for start in range(lo, hi, max_flows):
            stop = min(start + max_flows, hi)
            yield flows.take(np.arange(start, stop), _derived(flows.batch_id, [str(start).encode()]))


def detect(flows: RecordBatch, engine: DetectionEngine, max_flows: int = 5000,
           batch_ms: int = 1000) -> tuple[RecordBatch, int]:
    """All alerts of ``engine`` over the flow stream, and how many batches it took."""
    found: list[RecordBatch] = []
    batches = 0
    for batch in flow_batches(flows, max_flows, batch_ms):
        batches += 1
        alerts = engine.process(batch)
        if len(alerts):
            found.append(alerts)
    if not found:
        return ALERT.make_batch({}), batches
    return RecordBatch.concat(found, _derived(b"alerts", [a.batch_id for a in found])), batches


def make_engine(config: str | Path | None = None, registry_path: str | Path | None = None,
                seed: int = 0) -> DetectionEngine:
    """:meth:`DetectionEngine.from_files`, an unreadable file reported as OfflineError."""
    try:
        return DetectionEngine.from_files(config, registry_path, seed=seed)
    except OSError as exc:
        raise OfflineError(f"{exc.filename or config}: cannot read: {exc.strerror or exc}") from None


def scenario_sources(scenario_dir: str | Path, institution: str | None = None) -> list[CaptureSource]:
    """The captures of a scenario folder (its manifest), optionally of one institution only."""
    from finsa.scenario.generator import ScenarioError, load_manifest

    folder = Path(scenario_dir)
    try:
        manifest = load_manifest(folder)
    except ScenarioError as exc:
        raise OfflineError(str(exc)) from None
    out = [CaptureSource(folder / c["path"], c["institution"], c.get("sensor", ""))
           for c in manifest["captures"] if institution in (None, c["institution"])]
    if not out:
        raise OfflineError(f"{folder}: no capture of institution {institution!r}")
    return out


def arp_sources(sources: Sequence[CaptureSource]) -> RecordBatch:
    """The ARP bindings of every capture (:mod:`finsa.collectors.meter.arp_bindings`), in time order."""
    from finsa.collectors.meter.arp_bindings import arp_bindings
    from finsa.collectors.pcap.capture import read_capture

    return _merged(sources, lambda src, sensor: [arp_bindings(chunk, src.institution_id, sensor)
                                                 for chunk in read_capture(src.path)], ARP, "first_seen_ms")


def run_offline(sources: Sequence[CaptureSource], engine: DetectionEngine | None = None,
                profile: str = "agent", max_flows: int = 5000, batch_ms: int = 1000) -> OfflineResult:
    """Meter ``sources`` and run ``engine`` (default detectors) over their flows and ARP bindings."""
    engine = engine if engine is not None else DetectionEngine()
    flows = meter_sources(sources, profile)
    alerts, batches = detect(flows, engine, max_flows, batch_ms)
    bindings = arp_sources(sources)
    if len(bindings):
        arp_alerts = engine.process(bindings)
        if len(arp_alerts):
            alerts = RecordBatch.concat([alerts, arp_alerts], alerts.batch_id)
    return OfflineResult(flows, alerts, batches)


@dataclass
class SectorRun:
    """What the sector picture concluded over an offline run.

    ``campaigns``: the tracker's campaigns at the end (oldest first); ``updates``: every campaign
    snapshot published, in order; ``warnings``: every early warning issued, in order.
    """

    campaigns: list[Any]
    updates: list[Any]
    warnings: list[Any]
    ticks: int


def run_sector(picture: "SectorPicture", alerts: RecordBatch, flows: RecordBatch | None = None,
               step_ms: int = 60_000) -> SectorRun:
    """Feed ``picture`` minute by minute of flow time: that minute's flows, then its alerts (time
    order), then ``tick`` at the minute's last millisecond, as a worker would."""
    flows = flows if flows is not None else FLOW.make_batch({})
    a_t = alerts.columns["time_ms"].astype(np.int64)
    f_t = flows.columns["last_seen_ms"].astype(np.int64)
    a_order, f_order = np.argsort(a_t, kind="stable"), np.argsort(f_t, kind="stable")
    a_t, f_t = a_t[a_order], f_t[f_order]
    every = np.concatenate([a_t, f_t])
    run = SectorRun([], [], [], 0)
    if not len(every):
        return run
    ai = fi = 0
    for minute in range(int(every.min()) // step_ms, int(every.max()) // step_ms + 1):
        end_ms = (minute + 1) * step_ms
        fj, aj = int(np.searchsorted(f_t, end_ms)), int(np.searchsorted(a_t, end_ms))
        if fj > fi:
            picture.observe_flows(flows.take(f_order[fi:fj]))
        if aj > ai:
            picture.observe_alerts(alerts.take(a_order[ai:aj]))
        ai, fi = aj, fj
        update = picture.tick(end_ms - 1)
        run.updates += update.campaigns
        run.warnings += update.warnings
        run.ticks += 1
    run.campaigns = picture.campaigns()
    return run


def _derived(seed: bytes, parts: list[bytes]) -> bytes:
    """A batch id that is a pure function of its inputs (a rerun gives the same ids)."""
    return hashlib.blake2b(seed + b"".join(parts), digest_size=16).digest()
