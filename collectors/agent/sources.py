"""The agent's traffic sources, each metered into flow batches handed to a sink.

* pcap files: replayed through :func:`finsa.collectors.replay.replay_all` (at ``speed`` times
  capture pace, or as fast as possible), one capture after another in one thread;
* live interfaces: :class:`finsa.collectors.live.capture.LiveCapture` feeding a
  :class:`finsa.collectors.meter.flowmeter.FlowMeter`, one thread per interface, idle flows expired by the
  wall clock while the link is quiet;
* flow export (NetFlow v5/v9, IPFIX, sFlow): :class:`finsa.collectors.export.receiver.ExportReceiver`
  on a UDP ``host:port``, one per listener;
* logs of an IDS the institution already runs: Zeek logs (files, or directories whose conn/dns/
  ssl/http/ssh/notice logs are followed) and Suricata ``eve.json`` files, followed with
  :class:`finsa.collectors.idslogs.rotating_files.LogFollower` (read positions kept across restarts, rename
  and copytruncate rotations followed) and mapped by :mod:`finsa.collectors.idslogs.zeek` /
  :mod:`finsa.collectors.idslogs.suricata_eve`: flows to the sink, forwarded alerts to the alert sink.

Each source runs in a daemon thread until it ends (files) or ``stop`` is set (interfaces).
A source that fails is counted (``finsa_agent_source_failures_total``) and logged once; the
others keep running.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from finsa import wire
from finsa.metrics import REGISTRY

if TYPE_CHECKING:
    from finsa.collectors.agent.packet_ring import PacketRing

__all__ = ["start_pcap_source", "start_live_source", "start_export_source", "start_log_source",
           "first_packet_ms", "log_positions_path"]

Sink = Callable[[wire.RecordBatch], object]
log = logging.getLogger("finsa.agent")
FAILURES = REGISTRY.counter("finsa_agent_source_failures_total", "Sources that stopped on an error", ["kind"])


def first_packet_ms(path: Path) -> int:
    """Capture time of a file's first packet (ms since the epoch); 0 for an empty capture."""
    from finsa.collectors.pcap.capture import read_capture

    for chunk in read_capture(path, chunk_packets=1):
        if len(chunk):
            return int(chunk.ts_ns[0] // 1_000_000)
    return 0


def start_pcap_source(paths: list[Path], institution_id: str, sensor_id: str, sink: Sink,
                      stop: threading.Event, speed: float = 0.0, profile: str = "agent",
                      rebase_time: bool = False) -> threading.Thread:
    """Meter capture files one after another in a thread; returns the started thread."""
    def run() -> None:
        from finsa.collectors.replay import ReplaySource, replay_all

        for path in paths:
            if stop.is_set():
                return
            try:
                start_ms = first_packet_ms(path)
                rebase_ms = int(time.time() * 1000) - start_ms if rebase_time else 0
                replay_all([ReplaySource(path, institution_id, sensor_id)], sink, start_ms,
                           speed=speed if speed > 0 else 1e9, profile=profile, rebase_ms=rebase_ms, stop=stop)
            except Exception as exc:  # noqa: BLE001 - one bad capture must not stop the agent
                FAILURES.inc(kind="pcap")
                log.error("capture %s failed: %s: %s", path, type(exc).__name__, exc)

    thread = threading.Thread(target=run, daemon=True, name="agent-pcap")
    thread.start()
    return thread


def start_live_source(interface: str, institution_id: str, sensor_id: str, sink: Sink,
                      stop: threading.Event, profile: str = "agent", ring: PacketRing | None = None) -> threading.Thread:
    """``ring``: a :class:`~finsa.collectors.agent.packet_ring.PacketRing` keeping the packets too."""
    """Capture and meter one interface in a thread until ``stop``; returns the started thread."""
    def emit(batch: wire.RecordBatch | None) -> None:
        if batch is not None and len(batch):
            sink(batch)

    def run() -> None:
        from finsa.collectors.meter.arp_bindings import arp_bindings
        from finsa.collectors.live.capture import LiveCapture
        from finsa.collectors.meter.flowmeter import FlowMeter

        meter = FlowMeter(profile, institution_id=institution_id, sensor_id=sensor_id)
        try:
            with LiveCapture(interface) as capture:
                stopper = threading.Thread(target=lambda: (stop.wait(), capture.stop()), daemon=True)
                stopper.start()
                for packets in capture.batches(timeout_ms=200, max_blocks=64):
                    if len(packets):
                        if ring is not None:
                            ring.add(packets)
                        emit(meter.add(packets))
                        emit(arp_bindings(packets, institution_id, sensor_id))
                    emit(meter.expire(int(time.time() * 1000)))
        except Exception as exc:  # noqa: BLE001 - counted and logged; other sources keep running
            FAILURES.inc(kind="live")
            log.error("live capture on %s failed: %s: %s", interface, type(exc).__name__, exc)
        emit(meter.flush())

    thread = threading.Thread(target=run, daemon=True, name=f"agent-live-{interface}")
    thread.start()
    return thread


def start_export_source(listen: str, institution_id: str, sensor_id: str, sink: Sink,
                        stop: threading.Event) -> threading.Thread:
    """Receive flow export on UDP ``host:port`` until ``stop``; returns the watching thread."""
    from finsa.collectors.export.receiver import ExportReceiver

    host, _, port = listen.rpartition(":")
    receiver = ExportReceiver(host.strip("[]") or "0.0.0.0", int(port), institution_id, sensor_id, sink)

    def run() -> None:
        try:
            receiver.start()
        except OSError as exc:
            FAILURES.inc(kind="export")
            log.error("flow-export listener %s failed: %s", listen, exc)
            return
        stop.wait()
        receiver.stop()

    thread = threading.Thread(target=run, daemon=True, name=f"agent-export-{listen}")
    thread.start()
    return thread


def _log_files(kind: str, paths: list[Path]) -> list[Path]:
    """The files to follow: named files as given, and in directories the logs finsa maps."""
    from finsa.collectors.idslogs.zeek import log_kind_from_name

    out: list[Path] = []
    for path in paths:
        if not path.is_dir():
            out.append(path)
            continue
        for child in sorted(path.iterdir()):
            wanted = log_kind_from_name(child.name) if kind == "zeek" else "eve" in child.name
            if child.suffix in (".log", ".json") and wanted and child.is_file():
                out.append(child)
    return out


def log_positions_path(state_dir: Path, kind: str) -> Path:
    """The file where a log source's read positions are kept (one per kind: zeek, suricata)."""
    return Path(state_dir) / f"log-positions-{kind}.json"


def start_log_source(kind: str, paths: list[Path], institution_id: str, sensor_id: str, sink: Sink,
                     stop: threading.Event, alert_sink: Sink | None = None, from_start: bool = False,
                     follow: bool = True, poll_s: float = 0.5, rescan_s: float = 5.0,
                     max_lines: int = 10_000, state_dir: Path | None = None, commit_s: float = 1.0,
                     rotate_wait_s: float = 5.0, inactive_s: float = 300.0) -> threading.Thread:
    """Follow Zeek logs (``kind="zeek"``, files or directories) or Suricata EVE files
    (``kind="suricata"``) in a thread: FLOW batches go to ``sink``, ALERT batches to ``alert_sink``
    (default ``sink``). With ``follow=False`` each file is read to its end once and the thread ends.

    With ``state_dir`` the read positions are saved in :func:`log_positions_path` (at most every
    ``commit_s`` after the batches were handed to the sinks, and when the source stops) and the
    next start resumes from them (:class:`finsa.collectors.idslogs.rotating_files.LogFollower`). A positions
    file that cannot be read stops this source before it reads anything (counted in
    ``finsa_agent_source_failures_total``, logged, the file left as it is)."""
    from finsa.collectors.idslogs.rotating_files import LogFollower
    from finsa.collectors.idslogs.read_positions import PositionStore
    from finsa.collectors.idslogs.suricata_eve import EveParser
    from finsa.collectors.idslogs.zeek import ZeekLogParser

    store = PositionStore(log_positions_path(state_dir, kind)) if state_dir is not None else None
    follower = LogFollower(lambda: _log_files(kind, paths), kind, store, from_start=from_start,
                           rotate_wait_s=rotate_wait_s, inactive_s=inactive_s,
                           header_prefix="#" if kind == "zeek" else None)
    parsers: dict[int, object] = {}

    def parser(tail):
        if id(tail) not in parsers:
            parsers[id(tail)] = (ZeekLogParser(institution_id, sensor_id, name=tail.path.name) if kind == "zeek"
                                 else EveParser(institution_id, sensor_id))
        return parsers[id(tail)]

    def round_() -> int:
        lines_read = 0
        for tail, lines in follower.read(max_lines):
            lines_read += len(lines)
            parse = parser(tail)
            for line in lines:
                parse.feed(line)
            flows, alerts = parse.drain()
            if flows is not None:
                sink(flows)
            if alerts is not None:
                (alert_sink or sink)(alerts)
        live = {id(f.tail) for f in follower.follows}
        for key in [k for k in parsers if k not in live]:
            del parsers[key]
        return lines_read

    def run() -> None:
        try:
            follower.open()
        except Exception as exc:  # noqa: BLE001 - a refused positions file stops this source only
            FAILURES.inc(kind=kind)
            log.error("%s log source not started: %s", kind, exc)
            return
        next_scan = time.monotonic() + rescan_s
        next_commit = time.monotonic() + commit_s
        handed_on = True  # positions are saved only after what was read reached the sinks
        try:
            while not stop.is_set():
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + rescan_s
                    follower.scan()
                read = round_()
                if time.monotonic() >= next_commit:
                    next_commit = time.monotonic() + commit_s
                    follower.commit()
                if read == 0:
                    if not follow:
                        return
                    stop.wait(poll_s)
        except Exception as exc:  # noqa: BLE001 - counted and logged; other sources keep running
            handed_on = False
            FAILURES.inc(kind=kind)
            log.error("%s log source failed: %s: %s", kind, type(exc).__name__, exc)
        finally:
            follower.close(commit=handed_on)

    thread = threading.Thread(target=run, daemon=True, name=f"agent-{kind}-logs")
    thread.start()
    return thread
