"""``finsa run``: the embedded default, everything on one machine with one command.

It starts the Tansu broker (a subprocess on a free loopback port), opens the embedded store
(chdb) in ``--data-dir``, starts a stream worker and the web view in this process, and replays a
labeled scenario (generated on first use) through the collector at ``--speed`` times real time,
with flow times rebased to now. Every batch is signed with its institution's key (made on first
use in ``DATA_DIR/keys``) and the worker dead-letters any batch that is not. It prints the web view's URL and progress, stops on Ctrl-C or
after ``--for`` seconds, draining what the broker acknowledged before it stops.

    finsa run --data-dir data/run --for 120
    finsa query --data-dir data/run "SELECT count() FROM alerts"   # once it has stopped
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from finsa import wire
from finsa.batchauth import SERVICE_SIGNER, BatchVerifier, load_keys
from finsa.collectors.collect_command import scenario_sources
from finsa.collectors.agent.publisher import BatchPublisher
from finsa.collectors.replay import replay_all
from finsa.kafka import ensure_topics
from finsa.settings import FileWatcher
from finsa.streams.faust_app import WorkerSettings
from finsa.streams.broker import EmbeddedBroker
from finsa.streams.processor import FlowProcessor
from finsa.streams.service import StreamService

if TYPE_CHECKING:
    from finsa.streams.sector_stage import SectorStage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=Path("data/run"), help="where data lives (default data/run)")
    parser.add_argument("--for", dest="for_s", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed relative to real time (default 1)")
    parser.add_argument("--port", type=int, default=8600, help="port of the web view (default 8600)")
    parser.add_argument("--host", default="127.0.0.1", help="address of the web view (default 127.0.0.1)")
    parser.add_argument("--scenario", type=Path, help="scenario directory to replay (default: DATA_DIR/scenario, generated)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated scenario")
    parser.add_argument("--no-replay", action="store_true", help="do not replay a scenario (wait for external agents)")
    parser.add_argument("--broker-port", type=int, default=0, help="port of the embedded broker (default: a free one)")
    parser.add_argument("--notify", type=Path, help="notifications config (finsa notify --check FILE)")  # SOC (issue 16)
    parser.add_argument("--clickhouse-http", type=int, default=0, metavar="PORT",  # SOC (issue 16)
                        help="serve the store's ClickHouse HTTP interface for Grafana, read-only per tenant (0 = off)")


def store_path(data_dir: Path) -> Path:
    """The embedded store lives in the data directory itself (next to scenario/, faust/, broker.log),
    so ``finsa query --data-dir D`` reads what ``finsa run --data-dir D`` wrote."""
    return data_dir


def _prepare_scenario(args: argparse.Namespace) -> Path:
    scenario = args.scenario or args.data_dir / "scenario"
    if not (scenario / "manifest.json").exists():
        from finsa.scenario.generator import generate_scenario

        print(f"finsa: generating scenario (seed {args.seed}) in {scenario}", flush=True)
        generate_scenario(scenario, seed=args.seed)
    return scenario


def topic_partitions(flow_partitions: int) -> dict[str, int]:
    """Topics and their partitions: flows scale out; alerts, heartbeats and sector outputs have one
    partition each, so one consumer holds the whole sector picture."""
    single = ("alerts", "heartbeats", "warnings", "campaigns", "levels", "emergencies", "dlq")
    return {wire.TOPICS["flows"]: flow_partitions, **{wire.TOPICS[name]: 1 for name in single}}


def batch_keys(directory: Path, institutions: list[str]) -> dict[str, bytes]:
    """The batch-signing key of each institution, made on first use (``DIR/<id>.key``, mode 600)."""
    directory.mkdir(parents=True, exist_ok=True)
    for inst in institutions:
        path = directory / f"{inst}.key"
        if not path.exists():
            path.write_text(secrets.token_hex(32) + "\n")
            path.chmod(0o600)
    keys = load_keys(directory)
    return {inst: keys[inst] for inst in institutions}


def replay_rebase_ms(start_ms: int, duration_ms: int, speed: float, now_ms: int) -> int:
    """The shift that stamps a replayed scenario's flows in wall-clock time, never in the future.

    At ``speed`` x real time the scenario's flow clock runs ahead of the wall clock; the shift
    puts the scenario's end at the moment its replay ends, so every flow is stamped no later than
    the moment it is replayed and the live view's "last N minutes" shows it at once.

    >>> replay_rebase_ms(0, 100_000, 5.0, 1_000_000)   # replayed in 20 s: starts 80 s "ago"
    920000
    >>> replay_rebase_ms(0, 100_000, 1.0, 1_000_000)   # real time: starts now
    1000000
    """
    ahead_ms = duration_ms * (1 - 1 / speed) if speed > 1 else 0
    return int(now_ms - start_ms - ahead_ms)


class Embedded:
    """The pieces of ``finsa run``, started and stopped in order."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stop_event = threading.Event()
        self.broker = EmbeddedBroker(port=args.broker_port, log_path=args.data_dir / "broker.log")
        self.store = None
        self.publisher: BatchPublisher | None = None
        self.replay_thread: threading.Thread | None = None
        self.keys: dict[str, bytes] = {}
        self.watcher = None
        self.registry_watcher: FileWatcher | None = None

    def _open_store(self):
        from finsa.storage.backend import open_store

        store = open_store(data_dir=store_path(self.args.data_dir))
        store.migrate()
        return store

    def _start_replay(self, scenario: Path, sector: SectorStage | None = None) -> None:
        from finsa.institutions import load_registry

        sources, start_ms = scenario_sources(scenario)
        registry_file = scenario / "institutions.toml"
        if registry_file.exists():
            # onboarding: an institution added to the file appears without a restart (in the store
            # and in the sector picture). The watcher takes its stamp before the first load, so an
            # edit in between is seen at the next poll.
            def take(registry) -> None:  # noqa: ANN001 - a Registry
                self.store.load_institutions(registry)
                if sector is not None:
                    sector.use_registry(registry)

            self.registry_watcher = FileWatcher(
                registry_file, load_registry, take,
                on_error=lambda problems: print(f"finsa: {registry_file} refused, keeping the running registry: "
                                                f"{'; '.join(problems)}", file=sys.stderr, flush=True))
            self.store.load_institutions(load_registry(registry_file))
            self.registry_watcher.start()
        self.publisher = BatchPublisher(self.broker.bootstrap, client_id="finsa-run-collector",
                                        signing_keys=self.keys).start()
        duration_ms = int(float(json.loads((scenario / "manifest.json").read_text())["duration_s"]) * 1000)
        rebase_ms = replay_rebase_ms(start_ms, duration_ms, self.args.speed, int(time.time() * 1000))
        self.replay_thread = threading.Thread(
            target=replay_all, daemon=True, name="replay",
            args=(sources, self.publisher.publish, start_ms),
            kwargs={"speed": self.args.speed, "rebase_ms": rebase_ms, "stop": self.stop_event})
        self.replay_thread.start()

    def _detection(self, scenario: Path | None, verifier: BatchVerifier | None = None):  # noqa: ANN202
        """The detection engine (with the scenario's detector config) and the sector stage."""
        from finsa.app.offline import make_engine
        from finsa.sector.picture import SectorPicture
        from finsa.streams.sector_stage import SectorStage, feed_intel
        from finsa.app.worker import watch_detectors

        if scenario is None or not (scenario / "institutions.toml").exists():
            return make_engine(), None
        registry_file = scenario / "institutions.toml"
        config = scenario / "detectors.toml"
        engine = make_engine(config if config.exists() else None, registry_file)
        if config.exists():
            self.watcher = watch_detectors(config, engine, registry_file)
        inventory = scenario / "inventory.toml"
        picture = SectorPicture.from_files(registry_file, inventory if inventory.exists() else None)
        stage = SectorStage(picture, self.store, [feed_intel(engine)], verifier=verifier)
        return engine, stage

    async def run(self) -> int:
        from finsa.dashboards.webview import start_webview

        args = self.args
        args.data_dir.mkdir(parents=True, exist_ok=True)
        scenario = None if args.no_replay else _prepare_scenario(args)
        self.broker.start()
        print(f"finsa: broker (Tansu) on {self.broker.bootstrap}", flush=True)
        ensure_topics(self.broker.bootstrap, topic_partitions(4))
        self.store = self._open_store()
        verifier = None
        if scenario is not None:
            self.keys = batch_keys(args.data_dir / "keys",
                                   [s.institution_id for s in scenario_sources(scenario)[0]] + [SERVICE_SIGNER])
            verifier = BatchVerifier(self.keys, key_dir=args.data_dir / "keys")
        engine, sector = self._detection(scenario, verifier)
        processor = FlowProcessor(self.store, engine, should_stop=self.stop_event.is_set, verifier=verifier,
                                  flow_observers=[sector.observe_flows] if sector else [])
        service = StreamService(WorkerSettings(self.broker.bootstrap, datadir=args.data_dir / "faust"), processor, sector)
        routes = None
        if sector is not None:
            from finsa.sector.indicators_http import indicator_routes

            routes = indicator_routes(sector.blocklist)
        # --- SOC (issue 16): analysts' accepted allowlist entries reach the detectors live; notifications
        from finsa.app.soc_wiring import start_clickhouse_http, start_notifier
        from finsa.streams.feedback import FeedbackPoller
        feedback = FeedbackPoller(self.store, engine).start()
        notifier = start_notifier(args.notify, sector, args.data_dir)
        # --- end SOC
        # --- SOC (issue 16): demo logins (regulator, operator, an analyst of each institution)
        from finsa.dashboards.soc.demo_users import announce_logins, demo_users
        users, logins = demo_users(self.keys)
        # --- end SOC
        runner = await start_webview(self.store, host=args.host, port=args.port, extra_routes=routes, users=users)
        announce_logins(runner.app, logins, f"http://{args.host}:{args.port}")  # SOC (issue 16)
        clickhouse_http = start_clickhouse_http(args.clickhouse_http, self.store, args.data_dir, args.host,
                                                list(self.keys))  # SOC (issue 16)
        print(f"finsa: threat view at http://{args.host}:{args.port}/", flush=True)
        await service.start()
        if scenario is not None:
            self._start_replay(scenario, sector)
        try:
            await self._wait(processor, service)
        finally:
            self.stop_event.set()
            await self._drain(processor)
            await service.stop()
            await runner.cleanup()
            feedback.stop()  # SOC (issue 16)
            if clickhouse_http is not None:
                clickhouse_http.stop()
            if notifier is not None:
                notifier.stop()
            for watcher in (self.watcher, self.registry_watcher):
                if watcher is not None:
                    watcher.stop()
            self.store.close()
            self.broker.stop()
        print(f"finsa: stopped; data in {args.data_dir} (finsa query --data-dir {store_path(args.data_dir)} SQL)")
        return 0

    async def _wait(self, processor: FlowProcessor, service: StreamService) -> None:
        loop = asyncio.get_running_loop()
        interrupted = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupted.set)
        t0 = time.monotonic()
        next_report = t0 + 10
        while not interrupted.is_set():
            now = time.monotonic()
            if self.args.for_s and now - t0 >= self.args.for_s:
                break
            if service.failed is not None:
                raise RuntimeError(f"stream worker failed: {service.failed!r}")
            if now >= next_report:
                next_report += 10
                print(self._progress(processor, now - t0), flush=True)
            await asyncio.sleep(0.2)

    def _progress(self, processor: FlowProcessor, elapsed_s: float) -> str:
        sent = self.publisher.acknowledged if self.publisher else 0
        counts = self.store.query("SELECT (SELECT count() FROM flows), (SELECT count() FROM alerts FINAL)").rows[0]
        return (f"finsa: {elapsed_s:5.0f} s  batches sent {sent}, processed {processor.batches}; "
                f"flows stored {counts[0]}, alerts {counts[1]}")

    async def _drain(self, processor: FlowProcessor, timeout_s: float = 20.0) -> None:
        """Wait until the worker processed every batch the broker acknowledged."""
        if self.replay_thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.replay_thread.join, 10)
        if self.publisher is None:
            return
        self.publisher.flush(10)
        deadline = time.monotonic() + timeout_s
        while processor.batches < self.publisher.acknowledged and time.monotonic() < deadline:
            await asyncio.sleep(0.2)


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(Embedded(args).run())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - report, do not dump a trace on the user
        print(f"finsa run: {exc}", file=sys.stderr)
        raise
