"""The agent's traffic sources, each metered into flow batches handed to a sink.

Every source has the same lifecycle (``finsa.lifecycle``): an inert constructor that validates
its settings, :meth:`Source.start` (opens what it reads and starts its thread), :meth:`Source.stop`
(stops intake, hands what it metered so far to the sink, waits for its thread) and
:attr:`Source.done` (a file source that reached its end).

* :class:`PcapSource`: capture files replayed through :func:`finsa.collectors.replay.replay_all`
  (at ``speed`` times capture pace, or as fast as possible), one after another in one thread;
* :class:`LiveSource`: :class:`finsa.collectors.live.capture.LiveCapture` feeding a
  :class:`finsa.collectors.meter.flowmeter.FlowMeter`, idle flows expired by the wall clock while
  the link is quiet;
* :class:`ExportSource`: flow export (NetFlow v5/v9, IPFIX, sFlow) received by
  :class:`finsa.collectors.export.receiver.ExportReceiver` on a UDP ``host:port``;
* :class:`LogSource`: logs of an IDS the institution already runs: Zeek logs (files, or
  directories whose conn/dns/ssl/http/ssh/notice logs are followed) and Suricata ``eve.json``
  files, followed with :class:`finsa.collectors.idslogs.rotating_files.LogFollower` (read positions
  kept across restarts, rename and copytruncate rotations followed) and mapped by
  :mod:`finsa.collectors.idslogs.zeek` / :mod:`finsa.collectors.idslogs.suricata_eve`: flows to
  the sink, forwarded alerts to the alert sink.

A source that fails is counted (``finsa_agent_source_failures_total``) and logged once; the
others keep running.

>>> src = ExportSource("127.0.0.1:0", "bank-a", "bank-a-tap1", sink=print)   # inert: nothing bound yet
>>> src.kind, src.done
('export', False)
>>> ExportSource("no-port", "bank-a", "t", sink=print)
Traceback (most recent call last):
...
ValueError: export listen: expected host:port, got 'no-port'
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from finsa import wire
from finsa.metrics import REGISTRY

if TYPE_CHECKING:  # imported when started, see ExportSource.start
    from finsa.collectors.agent.packet_ring import PacketRing
    from finsa.collectors.export.receiver import ExportReceiver

__all__ = ["Source", "PcapSource", "LiveSource", "ExportSource", "LogSource", "first_packet_ms",
           "log_positions_path"]

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


class Source:
    """Base of the agent's sources: a thread running :meth:`_run` until :attr:`_stop` is set."""

    kind = "source"

    def __init__(self, institution_id: str, sensor_id: str, sink: Sink) -> None:
        self.institution_id, self.sensor_id, self.sink = institution_id, sensor_id, sink
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "Source":
        self._thread = threading.Thread(target=self._guarded, daemon=True, name=f"agent-{self.kind}")
        self._thread.start()
        return self

    def _guarded(self) -> None:
        try:
            self._run()
        except Exception as exc:  # noqa: BLE001 - counted and logged; other sources keep running
            FAILURES.inc(kind=self.kind)
            log.error("%s source failed: %s: %s", self.kind, type(exc).__name__, exc)

    def _run(self) -> None:
        raise NotImplementedError

    def _emit(self, batch: wire.RecordBatch | None) -> None:
        if batch is not None and len(batch):
            self.sink(batch)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop intake; what was metered so far goes to the sink before the thread ends."""
        self._stop.set()
        self.join(timeout_s)

    def join(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def done(self) -> bool:
        """True once started and its thread ended (a file source read to its end, or stopped)."""
        return self._thread is not None and not self._thread.is_alive()


class PcapSource(Source):
    """Meter capture files one after another (``speed`` x capture pace; 0 = as fast as possible)."""

    kind = "pcap"

    def __init__(self, paths: list[Path], institution_id: str, sensor_id: str, sink: Sink, speed: float = 0.0,
                 profile: str = "agent", rebase_time: bool = False) -> None:
        if speed < 0:
            raise ValueError(f"pcap speed: must be >= 0, got {speed!r}")
        super().__init__(institution_id, sensor_id, sink)
        self.paths, self.speed, self.profile, self.rebase_time = [Path(p) for p in paths], speed, profile, rebase_time

    def _run(self) -> None:
        from finsa.collectors.replay import CaptureSource, replay_all

        for path in self.paths:
            if self._stop.is_set():
                return
            try:
                start_ms = first_packet_ms(path)
                rebase_ms = int(time.time() * 1000) - start_ms if self.rebase_time else 0
                replay_all([CaptureSource(path, self.institution_id, self.sensor_id)], self.sink, start_ms,
                           speed=self.speed if self.speed > 0 else 1e9, profile=self.profile, rebase_ms=rebase_ms,
                           stop=self._stop)
            except Exception as exc:  # noqa: BLE001 - one bad capture must not stop the agent
                FAILURES.inc(kind="pcap")
                log.error("capture %s failed: %s: %s", path, type(exc).__name__, exc)


class LiveSource(Source):
    """Capture and meter one interface until stopped."""

    kind = "live"

    def __init__(self, interface: str, institution_id: str, sensor_id: str, sink: Sink,
                 profile: str = "agent", ring: PacketRing | None = None) -> None:
        """``ring``: a :class:`~finsa.collectors.agent.packet_ring.PacketRing` keeping the packets too."""
        if not interface or "/" in interface:
            raise ValueError(f"live interface: not an interface name: {interface!r}")
        super().__init__(institution_id, sensor_id, sink)
        self.interface, self.profile, self.ring = interface, profile, ring

    def _run(self) -> None:
        from finsa.collectors.live.capture import LiveCapture
        from finsa.collectors.meter.arp_bindings import arp_bindings
        from finsa.collectors.meter.flowmeter import FlowMeter

        meter = FlowMeter(self.profile, institution_id=self.institution_id, sensor_id=self.sensor_id)
        try:
            with LiveCapture(self.interface) as capture:
                def stop_when_asked() -> None:
                    self._stop.wait()
                    capture.stop()

                stopper = threading.Thread(target=stop_when_asked, daemon=True)
                stopper.start()
                for packets in capture.batches(timeout_ms=200, max_blocks=64):
                    if len(packets):
                        if self.ring is not None:
                            self.ring.add(packets)
                        self._emit(meter.add(packets))
                        self._emit(arp_bindings(packets, self.institution_id, self.sensor_id))
                    self._emit(meter.expire(int(time.time() * 1000)))
        except Exception as exc:  # noqa: BLE001 - counted and logged; other sources keep running
            FAILURES.inc(kind="live")
            log.error("live capture on %s failed: %s: %s", self.interface, type(exc).__name__, exc)
        self._emit(meter.flush())


class ExportSource(Source):
    """Receive flow export on UDP ``host:port`` until stopped."""

    kind = "export"

    def __init__(self, listen: str, institution_id: str, sensor_id: str, sink: Sink) -> None:
        host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"export listen: expected host:port, got {listen!r}")
        super().__init__(institution_id, sensor_id, sink)
        self.listen, self.host, self.port = listen, host.strip("[]") or "0.0.0.0", int(port)
        self.receiver: ExportReceiver | None = None

    def start(self) -> "ExportSource":
        from finsa.collectors.export.receiver import ExportReceiver

        self.receiver = ExportReceiver(self.host, self.port, self.institution_id, self.sensor_id, self.sink)
        super().start()
        return self

    def _run(self) -> None:
        receiver = self.receiver
        if receiver is None:  # start() builds it before the thread runs
            return
        try:
            receiver.start()
        except OSError as exc:
            FAILURES.inc(kind="export")
            log.error("flow-export listener %s failed: %s", self.listen, exc)
            return
        self._stop.wait()
        receiver.stop()  # what it decoded so far goes to the sink


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


class LogSource(Source):
    """Follow Zeek logs (``kind="zeek"``, files or directories) or Suricata EVE files
    (``kind="suricata"``): FLOW batches go to ``sink``, ALERT batches to ``alert_sink`` (default
    ``sink``). With ``follow=False`` each file is read to its end once and the source is done.

    With ``state_dir`` the read positions are saved in :func:`log_positions_path` (at most every
    ``commit_s`` after the batches were handed to the sinks, and when the source stops) and the
    next start resumes from them. A positions file that cannot be read stops this source before it
    reads anything (counted in ``finsa_agent_source_failures_total``, logged, the file left as it is).
    """

    def __init__(self, kind: str, paths: list[Path], institution_id: str, sensor_id: str, sink: Sink,
                 alert_sink: Sink | None = None, from_start: bool = False, follow: bool = True,
                 poll_s: float = 0.5, rescan_s: float = 5.0, max_lines: int = 10_000,
                 state_dir: Path | None = None, commit_s: float = 1.0, rotate_wait_s: float = 5.0,
                 inactive_s: float = 300.0) -> None:
        if kind not in ("zeek", "suricata"):
            raise ValueError(f"log kind: expected zeek or suricata, got {kind!r}")
        super().__init__(institution_id, sensor_id, sink)
        self.kind, self.paths, self.alert_sink = kind, [Path(p) for p in paths], alert_sink or sink
        self.from_start, self.follow, self.poll_s, self.rescan_s = from_start, follow, poll_s, rescan_s
        self.max_lines, self.state_dir, self.commit_s = max_lines, state_dir, commit_s
        self.rotate_wait_s, self.inactive_s = rotate_wait_s, inactive_s
        self._parsers: dict[int, object] = {}

    def _parser(self, tail):
        from finsa.collectors.idslogs.suricata_eve import EveParser
        from finsa.collectors.idslogs.zeek import ZeekLogParser

        if id(tail) not in self._parsers:
            self._parsers[id(tail)] = (ZeekLogParser(self.institution_id, self.sensor_id, name=tail.path.name)
                                       if self.kind == "zeek" else EveParser(self.institution_id, self.sensor_id))
        return self._parsers[id(tail)]

    def _round(self, follower) -> int:
        lines_read = 0
        for tail, lines in follower.read(self.max_lines):
            lines_read += len(lines)
            parse = self._parser(tail)
            for line in lines:
                parse.feed(line)
            flows, alerts = parse.drain()
            if flows is not None:
                self.sink(flows)
            if alerts is not None:
                self.alert_sink(alerts)
        live = {id(f.tail) for f in follower.follows}
        for key in [k for k in self._parsers if k not in live]:
            del self._parsers[key]
        return lines_read

    def _follower(self):
        from finsa.collectors.idslogs.read_positions import PositionStore
        from finsa.collectors.idslogs.rotating_files import LogFollower

        store = PositionStore(log_positions_path(self.state_dir, self.kind)) if self.state_dir is not None else None
        return LogFollower(lambda: _log_files(self.kind, self.paths), self.kind, store, from_start=self.from_start,
                           rotate_wait_s=self.rotate_wait_s, inactive_s=self.inactive_s,
                           header_prefix="#" if self.kind == "zeek" else None)

    def _run(self) -> None:
        follower = self._follower()
        try:
            follower.open()
        except Exception as exc:  # noqa: BLE001 - a refused positions file stops this source only
            FAILURES.inc(kind=self.kind)
            log.error("%s log source not started: %s", self.kind, exc)
            return
        next_scan, next_commit = time.monotonic() + self.rescan_s, time.monotonic() + self.commit_s
        handed_on = True  # positions are saved only after what was read reached the sinks
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + self.rescan_s
                    follower.scan()
                read = self._round(follower)
                if time.monotonic() >= next_commit:
                    next_commit = time.monotonic() + self.commit_s
                    follower.commit()
                if read == 0:
                    if not self.follow:
                        return
                    self._stop.wait(self.poll_s)
        except Exception as exc:  # noqa: BLE001 - counted and logged; other sources keep running
            handed_on = False
            FAILURES.inc(kind=self.kind)
            log.error("%s log source failed: %s: %s", self.kind, type(exc).__name__, exc)
        finally:
            follower.close(commit=handed_on)
