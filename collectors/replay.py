"""Replaying captures as if live: meter them at capture pace (or ``speed`` times faster).

Used by ``finsa run`` and ``finsa collect`` on pcap sources. Packets are fed to a
:class:`~finsa.collectors.meter.flowmeter.FlowMeter` in slices of at most ``slice_ms`` of capture time; before
each slice the replayer sleeps until the wall clock reaches the slice's capture time divided by
``speed``. With ``rebase_ms`` every exported flow's times are shifted by that amount, so a scenario
recorded on a fixed morning shows up as happening now.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from finsa import wire
from finsa.collectors.meter.arp_bindings import arp_bindings
from finsa.collectors.meter.flowmeter import FlowMeter
from finsa.collectors.pcap.capture import read_capture

FlowSink = Callable[[wire.RecordBatch], object]  # what it returns is not used


@dataclass(frozen=True)
class CaptureSource:
    """One capture and the institution/sensor whose tap recorded it (the one capture-source type:
    replayed live by ``finsa run``/``finsa collect``, metered offline by ``finsa detect``/``backtest``)."""

    path: Path
    institution_id: str
    sensor_id: str = ""


class Replayer:
    """Meter captures in (accelerated) real time and hand flow batches (and the ARP bindings seen
    beside them) to ``sink``."""

    def __init__(self, sink: FlowSink, speed: float = 1.0, profile: str = "agent",
                 rebase_ms: int = 0, slice_ms: int = 250, stop: threading.Event | None = None,
                 linger_s: float = 1.0, max_rows: int = 5000) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.sink, self.speed, self.profile = sink, speed, profile
        self.rebase_ms, self.slice_ms = rebase_ms, slice_ms
        self.stop = stop or threading.Event()
        self.linger_s, self.max_rows = linger_s, max_rows
        self.flows_out = 0
        self._pending: list[wire.RecordBatch] = []
        self._pending_rows = 0
        self._last_send = time.monotonic()

    def _emit(self, batch: wire.RecordBatch | None) -> None:
        """Buffer expired flows; send them once ``linger_s`` passed or ``max_rows`` gathered."""
        if batch is not None and len(batch):
            if self.rebase_ms:
                cols = dict(batch.columns)
                cols["first_seen_ms"] = batch.columns["first_seen_ms"] + self.rebase_ms
                cols["last_seen_ms"] = batch.columns["last_seen_ms"] + self.rebase_ms
                batch = wire.RecordBatch(batch.type, cols, batch.batch_id)
            self._pending.append(batch)
            self._pending_rows += len(batch)
        if self._pending_rows >= self.max_rows or time.monotonic() - self._last_send >= self.linger_s:
            self._send()

    def _send(self) -> None:
        self._last_send = time.monotonic()
        if not self._pending:
            return
        by_type: dict[str, list[wire.RecordBatch]] = {}
        for pending in self._pending:  # flows, and the ARP bindings seen beside them
            by_type.setdefault(pending.type.name, []).append(pending)
        self._pending, self._pending_rows = [], 0
        for parts in by_type.values():
            batch = parts[0] if len(parts) == 1 else wire.RecordBatch.concat(parts)
            if batch.type is wire.FLOW:
                self.flows_out += len(batch)
            self.sink(batch)

    def run(self, source: CaptureSource, capture_start_ms: int, wall_start: float) -> None:
        """Replay one capture; ``capture_start_ms`` maps to ``wall_start`` (time.monotonic)."""
        meter = FlowMeter(self.profile, institution_id=source.institution_id, sensor_id=source.sensor_id)
        for chunk in read_capture(source.path, chunk_packets=8192):
            ts_ms = chunk.ts_ns // 1_000_000
            for lo, hi in _time_slices(ts_ms, self.slice_ms):
                if self.stop.is_set():
                    self._send()
                    return
                self._wait_until(wall_start + (int(ts_ms[lo]) - capture_start_ms) / 1000.0 / self.speed)
                self._emit(meter.add(chunk[lo:hi]))
                self._emit(arp_bindings(chunk[lo:hi], source.institution_id, source.sensor_id))
                self._emit(meter.expire(meter.clock_ms))
        self._emit(meter.flush())
        self._send()

    def _wait_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)


def _time_slices(ts_ms: np.ndarray, slice_ms: int) -> list[tuple[int, int]]:
    """Index ranges of consecutive packets spanning at most ``slice_ms`` each."""
    if len(ts_ms) == 0:
        return []
    buckets = (ts_ms - ts_ms[0]) // max(slice_ms, 1)
    edges = np.flatnonzero(np.diff(buckets)) + 1
    bounds = [0, *edges.tolist(), len(ts_ms)]
    return list(zip(bounds[:-1], bounds[1:]))


def replay_all(sources: list[CaptureSource], sink: FlowSink, capture_start_ms: int, speed: float = 1.0,
               profile: str = "agent", rebase_ms: int = 0, stop: threading.Event | None = None) -> int:
    """Replay several captures side by side (one thread each); returns flows exported."""
    replayers = [Replayer(sink, speed, profile, rebase_ms, stop=stop) for _ in sources]
    wall_start = time.monotonic()
    threads = [threading.Thread(target=r.run, args=(s, capture_start_ms, wall_start), daemon=True)
               for r, s in zip(replayers, sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r.flows_out for r in replayers)
