"""``finsa run``: the embedded default, everything on one machine with one command.

It starts the Tansu broker (a subprocess on a free loopback port), opens the embedded store
(chdb) in ``--data-dir``, starts a stream worker and the web view in this process, and replays a
labeled scenario (generated on first use) through the collector at ``--speed`` times real time,
with flow times rebased to now. Every batch is signed with its institution's key (made on first
use in ``DATA_DIR/keys``) and the worker dead-letters any batch that is not. It prints the web
view's URL and progress (per kind of message: offered, processed, stored, and the lag; a stall
is reported at once). It stops on SIGTERM or SIGINT (Ctrl-C) or after ``--for`` seconds through
:mod:`finsa.lifecycle`: the replay stops, what the broker acknowledged is drained through
detection and storage (at most ``--drain-timeout`` s), the worker's Kafka clients close, the
store closes, and the broker is stopped. A second signal stops at once.

    finsa run --data-dir data/run --for 120
    finsa query --data-dir data/run "SELECT count() FROM alerts"   # once it has stopped
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import threading
import time
from pathlib import Path

from finsa import wire
from finsa.app.offline import scenario_sources
from finsa.app.stream_worker import StreamWorker, WorkerPlan
from finsa.batchauth import SERVICE_SIGNER, BatchVerifier, load_keys
from finsa.collectors.agent.publisher import BatchPublisher
from finsa.collectors.replay import replay_all
from finsa.kafka import ensure_topics
from finsa.lifecycle import Shutdown
from finsa.scenario.generator import load_manifest
from finsa.streams.broker import EmbeddedBroker
from finsa.streams.faust_app import WorkerSettings


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
    parser.add_argument("--drain-timeout", type=float, default=20.0,
                        help="on SIGTERM/SIGINT (or at the end of --for), seconds to store what the broker "
                             "acknowledged before exiting (default 20)")
    parser.add_argument("--stall-after", type=float, default=10.0,
                        help="report a stall when messages wait and nothing is processed for this long (s, default 10)")


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
    """The pieces of ``finsa run``: broker, stream worker (store, detection, sector picture, web
    view), collector replay; started in order and stopped through the one shutdown path."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.shutdown = Shutdown("run", args.drain_timeout, watchdog=True)
        self.broker = EmbeddedBroker(port=args.broker_port, log_path=args.data_dir / "broker.log")
        self.worker: StreamWorker | None = None
        self.publisher: BatchPublisher | None = None
        self.replay_thread: threading.Thread | None = None
        self.keys: dict[str, bytes] = {}

    def _plan(self, scenario: Path | None) -> WorkerPlan:
        """The stream worker: the scenario's institutions, inventory and detectors when it has them."""
        args = self.args
        settings = WorkerSettings(self.broker.bootstrap, datadir=args.data_dir / "faust", count_offered=False)
        plan = WorkerPlan(settings, data_dir=store_path(args.data_dir), web=(args.host, args.port),
                          load_institutions=True, stall_after_s=args.stall_after, name="run",
                          say=lambda line: print(line, flush=True),
                          notify=args.notify, notify_dir=args.data_dir, clickhouse_http=args.clickhouse_http,
                          http_dir=args.data_dir, http_host=args.host, demo_institutions=[])
        if scenario is None:
            return plan
        self.keys = batch_keys(args.data_dir / "keys",
                               sorted({s.institution_id for s in scenario_sources(scenario)}) + [SERVICE_SIGNER])
        plan.demo_institutions = list(self.keys)
        plan.verifier = BatchVerifier(self.keys, key_dir=args.data_dir / "keys")
        if (scenario / "institutions.toml").exists():
            plan.registry = scenario / "institutions.toml"
            inventory, detectors = scenario / "inventory.toml", scenario / "detectors.toml"
            plan.inventory = inventory if inventory.exists() else None
            plan.detectors = detectors if detectors.exists() else None
        return plan

    def _start_replay(self, scenario: Path, worker: StreamWorker) -> None:
        manifest = load_manifest(scenario)
        start_ms, duration_ms = int(manifest["start_ms"]), int(float(manifest["duration_s"]) * 1000)
        progress = worker.progress
        self.publisher = BatchPublisher(self.broker.bootstrap, client_id="finsa-run-collector",
                                        signing_keys=self.keys, on_acknowledged=progress.offer).start()
        rebase_ms = replay_rebase_ms(start_ms, duration_ms, self.args.speed, int(time.time() * 1000))
        self.replay_thread = threading.Thread(
            target=replay_all, daemon=True, name="replay",
            args=(scenario_sources(scenario), self.publisher.publish, start_ms),
            kwargs={"speed": self.args.speed, "rebase_ms": rebase_ms, "stop": self.shutdown.draining})
        self.replay_thread.start()

    async def run(self) -> int:
        args = self.args
        args.data_dir.mkdir(parents=True, exist_ok=True)
        self.shutdown.announce()
        scenario = None if args.no_replay else _prepare_scenario(args)
        try:
            self.broker.start()
            print(f"finsa: broker (Tansu) on {self.broker.bootstrap}", flush=True)
            ensure_topics(self.broker.bootstrap, topic_partitions(4))
            self.worker = worker = StreamWorker(self._plan(scenario))
            await worker.start()
            print(f"finsa: threat view at http://{args.host}:{args.port}/", flush=True)
            if scenario is not None:
                self._start_replay(scenario, worker)
            await self._wait(worker)
            await worker.drain(self.shutdown, self._intake_done)
        finally:
            await self._stop()
        print(f"finsa: stopped; data in {args.data_dir} (finsa query --data-dir {store_path(args.data_dir)} SQL)",
              flush=True)
        return 0

    async def _wait(self, worker: StreamWorker) -> None:
        """Until a stop signal or ``--for``; progress every 10 s, a stall reported at once."""
        t0 = time.monotonic()
        next_report = t0 + 10
        while not self.shutdown.requested:
            now = time.monotonic()
            if self.args.for_s and now - t0 >= self.args.for_s:
                self.shutdown.request("--for elapsed")
                break
            if worker.failed is not None:
                raise RuntimeError(f"stream worker failed: {worker.failed!r}")
            if self.publisher is not None:
                self.publisher.poll(0)  # serve acknowledgements: they are what was offered
            worker.check_stall()
            if now >= next_report:
                next_report += 10
                print(self._progress(worker, now - t0), flush=True)
            await asyncio.sleep(0.2)

    def _progress(self, worker: StreamWorker, elapsed_s: float) -> str:
        counts = worker.store.query("SELECT (SELECT count() FROM flows), (SELECT count() FROM alerts FINAL)").rows[0]
        return (f"finsa: {elapsed_s:5.0f} s  {worker.progress.line()}; "
                f"flows stored {counts[0]}, alerts {counts[1]}")

    def _intake_done(self) -> bool:
        """The replay stopped and the broker answered every batch it was sent (acknowledged or failed)."""
        if self.replay_thread is not None and self.replay_thread.is_alive():
            return False
        if self.publisher is None:
            return True
        self.publisher.poll(0)
        return self.publisher.outstanding == 0

    async def _stop(self) -> None:
        """Kafka clients first (the broker waits for connected clients), then the store, then the broker."""
        if self.worker is not None:
            await self.worker.stop()
        if self.publisher is not None:
            self.publisher.abort(1.0)
        self.broker.stop()


def main(args: argparse.Namespace) -> int:
    try:
        embedded = Embedded(args)
        embedded.shutdown.install()  # before the loop, so they stay ours until the process ends
        return asyncio.run(embedded.run())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"finsa run: {exc}", file=sys.stderr)
        raise
