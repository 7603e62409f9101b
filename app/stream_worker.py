"""The one builder of a stream worker, used by ``finsa run`` and ``finsa worker``.

Store -> detection engine -> sector stage -> intel feed -> processor -> Faust service -> web view
-> file watchers, and the SOC pieces (allowlist/verdict feedback poller, notifier, the store's
ClickHouse HTTP interface, demo logins), built from a :class:`WorkerPlan` (what to build) by :class:`StreamWorker`, whose
constructor is inert. Its lifecycle follows :mod:`finsa.lifecycle`:

* :meth:`StreamWorker.start`: open and migrate the store, build the rest, start consuming;
* :meth:`StreamWorker.drain`: stop intake and wait (bounded by the :class:`~finsa.lifecycle.Shutdown`)
  until every message offered was processed and stored;
* :meth:`StreamWorker.stop`: stop the Faust worker (its Kafka clients closed), the web view and
  the watchers, and close the store.

:meth:`StreamWorker.check_stall` reports a worker that stopped processing while data arrives at
once: a log line, ``finsa_worker_stalled``, and (with a sector picture) an emergency of kind
``worker_stalled`` in the sector's emergencies, cleared when it processes again.

>>> from finsa.streams.faust_app import WorkerSettings
>>> worker = StreamWorker(WorkerPlan(WorkerSettings("127.0.0.1:9092")))   # inert: nothing opened
>>> worker.store is None, worker.service is None
(True, True)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from finsa import wire
from finsa.batchauth import BatchVerifier
from finsa.lifecycle import Shutdown
from finsa.streams.faust_app import WorkerSettings
from finsa.streams.processor import FlowProcessor
from finsa.streams.progress import Progress
from finsa.streams.service import StreamService
from finsa.watch import FileWatcher

__all__ = ["WorkerPlan", "StreamWorker", "registry_watcher"]

log = logging.getLogger("finsa.worker")


@dataclass
class WorkerPlan:
    """What a stream worker is made of. ``web`` is (host, port) or None; with
    ``load_institutions`` the institutions file also fills the store's institutions table."""

    settings: WorkerSettings
    data_dir: Path | None = None
    clickhouse_url: str | None = None
    registry: Path | None = None
    inventory: Path | None = None
    detectors: Path | None = None
    verifier: BatchVerifier | None = None
    web: tuple[str, int] | None = None
    load_institutions: bool = False
    stall_after_s: float = 10.0
    name: str = "worker"
    #: SOC (issue 16): notifications config (its relative outbox path under ``notify_dir``), the
    #: store's ClickHouse HTTP interface on this port (0 = off; passwords under ``http_dir``/keys),
    #: and demo logins (regulator, operator, an analyst per institution) for the web view.
    notify: Path | None = None
    notify_dir: Path = Path(".")
    clickhouse_http: int = 0
    http_dir: Path = Path(".")
    http_host: str = "127.0.0.1"
    demo_institutions: list[str] | None = None
    say: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))


def registry_watcher(path: Path, take: Callable[[Any], None], say: Callable[[str], None],
                     name: str = "worker") -> FileWatcher:
    """A watcher handing an edited institutions file to ``take`` (an invalid one is refused with
    every problem said, the running registry kept); the file as it is now counts as seen."""
    from finsa.institutions import load_registry

    watcher = FileWatcher(path, load_registry, take, on_error=lambda problems: say(
        f"finsa {name}: {path} refused, keeping the running registry: {'; '.join(problems)}"))
    watcher.mark()
    return watcher


class StreamWorker:
    """A stream worker built from a plan; see the module docstring."""

    def __init__(self, plan: WorkerPlan) -> None:
        self.plan = plan
        self.progress = Progress(stall_after_s=plan.stall_after_s)
        self.stopping = False
        self.store: Any = None
        self.engine: Any = None
        self.sector: Any = None
        self.processor: FlowProcessor | None = None
        self.service: StreamService | None = None
        self.runner: Any = None
        self.watchers: list[FileWatcher] = []
        self.feedback: Any = None
        self.notifier: Any = None
        self.clickhouse_http: Any = None
        self._stall_id = ""
        self.drained = False

    def _build(self) -> StreamService:
        from finsa.detectors.engine import DetectionEngine
        from finsa.storage.backend import open_store

        plan = self.plan
        self.store = open_store(data_dir=plan.data_dir, url=plan.clickhouse_url)
        self.store.migrate()
        registry = None
        if plan.registry is not None:
            from finsa.institutions import load_registry

            registry = load_registry(plan.registry)
            if plan.load_institutions:
                self.store.load_institutions(registry)
            self.sector = self._sector_stage()
        self.engine = DetectionEngine.from_files(plan.detectors, plan.registry)
        if self.sector is not None:
            from finsa.streams.sector_stage import feed_intel

            self.sector.blocklist_sinks.append(feed_intel(self.engine))
        self._watch(registry)
        self.processor = FlowProcessor(self.store, self.engine, should_stop=lambda: self.stopping,
                                       verifier=plan.verifier,
                                       flow_observers=[self.sector.observe_flows] if self.sector else [])
        self.service = StreamService(plan.settings, self.processor, self.sector, self.progress)
        return self.service

    def _sector_stage(self):
        from finsa.sector.picture import SectorPicture
        from finsa.streams.sector_stage import SectorStage

        return SectorStage(SectorPicture.from_files(self.plan.registry, self.plan.inventory), self.store,
                           verifier=self.plan.verifier)

    def _watch(self, registry) -> None:
        """Reload the detectors and institutions files on change (an invalid file is refused with
        every problem, the running settings kept)."""
        plan = self.plan
        if plan.detectors is not None:
            from finsa.detectors.reload import ConfigWatcher

            watcher = ConfigWatcher(plan.detectors, lambda cfg: self.engine.reconfigure(cfg, registry),
                                    registry=registry)
            watcher.load()
            self.watchers.append(watcher)
        if plan.registry is not None and (self.sector is not None or plan.load_institutions):
            self.watchers.append(registry_watcher(plan.registry, self._take_registry, plan.say, plan.name))

    def _take_registry(self, registry) -> None:
        if self.plan.load_institutions:
            self.store.load_institutions(registry)
        if self.sector is not None:
            self.sector.use_registry(registry)

    async def start(self) -> "StreamWorker":
        service = self._build()
        self._start_soc()
        if self.plan.web is not None:
            await self._start_web(self.plan.web)
        if self.plan.clickhouse_http:
            from finsa.app.soc_wiring import start_clickhouse_http

            institutions = [i for i in self.plan.demo_institutions or [] if not i.startswith("_")] or None
            self.clickhouse_http = start_clickhouse_http(self.plan.clickhouse_http, self.store, self.plan.http_dir,
                                                         self.plan.http_host, institutions, out=self._print)
        for watcher in self.watchers:
            watcher.start()
        await service.start()
        return self

    def _print(self, line: str, flush: bool = True) -> None:
        self.plan.say(line)

    def _start_soc(self) -> None:
        """Analysts' accepted allowlist entries and verdicts reach the detectors live; notifications."""
        from finsa.app.soc_wiring import start_notifier
        from finsa.streams.feedback import FeedbackPoller

        self.feedback = FeedbackPoller(self.store, self.engine).start()
        self.notifier = start_notifier(self.plan.notify, self.sector, self.plan.notify_dir)

    async def _start_web(self, web: tuple[str, int]) -> None:
        from finsa.dashboards.webview import start_webview

        routes = None
        users: Any = None
        logins: list[Any] = []
        if self.sector is not None:
            from finsa.sector.indicators_http import indicator_routes

            routes = indicator_routes(self.sector.blocklist)
        if self.plan.demo_institutions is not None:
            from finsa.dashboards.soc.demo_users import demo_users

            users, logins = demo_users(self.plan.demo_institutions)
        host, port = web
        origins: dict[str, str] = {}
        if self.plan.registry is not None:  # each institution's agent, for its own analysts' pages
            from finsa.institutions import agent_origins, load_registry

            origins = agent_origins(load_registry(self.plan.registry))
        self.runner = await start_webview(self.store, host=host, port=port, extra_routes=routes, users=users,
                                          agent_origins=origins)
        if logins:
            from finsa.dashboards.soc.demo_users import announce_logins

            announce_logins(self.runner.app, logins, f"http://{host}:{port}", out=self.plan.say)

    @property
    def stopped(self) -> bool:
        """True when the Faust service stopped (or crashed) while nobody asked it to."""
        return self.service is not None and self.service.stopped

    @property
    def failed(self) -> BaseException | None:
        return self.service.failed if self.service is not None else None

    async def drain(self, shutdown: Shutdown, offered_done: Callable[[], bool] = lambda: True) -> bool:
        """Wait until ``offered_done()`` (the program's own intake stopped: ``finsa run``'s replay),
        then until every offered message was processed and stored, within the shutdown's bound.
        A worker that counts what its consumer receives (``finsa worker``) first pauses fetching,
        so what it has in hand is the whole drain. True when everything was drained."""
        await shutdown.wait_drained(offered_done)
        if self.plan.settings.count_offered and self.service is not None:  # set by start()
            self.service.close_intake()
        drained = await shutdown.wait_drained(self.progress.caught_up)
        self.plan.say(f"finsa {self.plan.name}: {'drained' if drained else 'drain cut short'}: "
                      f"{self.progress.line()}")
        self.drained = drained
        return drained

    async def stop(self) -> None:
        """Stop consuming (Kafka clients closed), then the web view, watchers, the SOC pieces and the store."""
        self.stopping = True
        if self.service is not None:
            await self.service.stop(wait_for_streams=self.drained)
        if self.runner is not None:
            await self.runner.cleanup()
        for watcher in self.watchers:
            watcher.stop()
        for part in (self.feedback, self.clickhouse_http, self.notifier):  # SOC (issue 16)
            if part is not None:
                part.stop()
        if self.store is not None:
            self.store.close()

    def check_stall(self) -> None:
        """Report a stall as it begins (and its end): log line, metric, sector emergency."""
        was = self.progress.stalled
        if self.progress.check():
            message = self.progress.stall_message()
            self.plan.say(f"finsa {self.plan.name}: {message}")
            log.error(message)
            self._emergency(True, message)
        elif was and not self.progress.stalled:
            self.plan.say(f"finsa {self.plan.name}: processing again: {self.progress.line()}")
            self._emergency(False, "the worker processes again")

    def _emergency(self, active: bool, why: str) -> None:
        if self.sector is None or self.store is None:
            return
        now_ms = int(time.time() * 1000)
        app_id = self.plan.settings.app_id
        if active:  # raised and cleared under one id, as the sector's other emergencies
            self._stall_id = f"worker_stalled:{app_id}:{now_ms}"
        batch = wire.EMERGENCY.make_batch({
            "emergency_id": [self._stall_id], "time_ms": [now_ms], "institution_id": [""],
            "sensor_id": [app_id], "kind": ["worker_stalled"], "severity": [4], "active": [int(active)],
            "why": [why], "evidence": [json.dumps({"offered": self.progress.offered,
                                                   "processed": self.progress.processed}, sort_keys=True)]})
        try:
            self.store.insert(batch)
        except Exception as exc:  # noqa: BLE001 - the log line and the metric still report the stall
            log.error("could not store the worker_stalled emergency: %s", exc)
