"""``finsa collect``: the collector agent. Meters captures and publishes flow batches to Kafka.

    finsa collect --config /etc/finsa/agent.toml            # the deployed agent (see finsa.collectors.agent.agent)
    finsa collect --config /etc/finsa/agent.toml --check    # validate, print the effective config (secrets
                                                            # masked); exit 0 when valid, 2 when not
    finsa collect --broker 127.0.0.1:9092 --institution bank-a --sensor bank-a-tap1 capture.pcap
    finsa collect --broker 127.0.0.1:9092 --scenario DIR --speed 4 --rebase-time

With ``--config`` the agent spools every batch on disk before sending it, pseudonymises internal
addresses, sends heartbeats, serves metrics and reloads its config on SIGHUP or when the file
changes. The flag form below sends directly (no spool, no pseudonymisation), for tests and demos.
With ``--scenario`` every capture of a scenario (see ``finsa scenario``) is replayed side by side,
each as its institution's sensor. ``--speed`` replays faster than capture time (``0`` means as fast
as possible); ``--rebase-time`` shifts flow times so the capture's start is now.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from finsa import wire
from finsa.collectors.agent.publisher import BatchPublisher
from finsa.collectors.replay import CaptureSource, replay_all
from finsa.errors import CaptureError, FinsaError
from finsa.kafka import ensure_topics
from finsa.lifecycle import Shutdown
from finsa.scenario_manifest import load_manifest, manifest_captures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="*", type=Path, help="pcap/pcapng files to meter")
    parser.add_argument("--config", type=Path, help="agent config file (TOML); the other flags are then not used")
    parser.add_argument("--check", action="store_true", help="with --config: validate, print the effective config, exit")
    parser.add_argument("--broker", help="Kafka bootstrap servers, host:port[,host:port]")
    parser.add_argument("--institution", default="", help="institution id of this sensor")
    parser.add_argument("--sensor", default="", help="sensor id (default: INSTITUTION-sensor)")
    parser.add_argument("--scenario", type=Path, help="replay every capture of a scenario directory")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="replay speed relative to capture time; 0 = as fast as possible (default)")
    parser.add_argument("--rebase-time", action="store_true", help="shift flow times so the capture starts now")
    parser.add_argument("--profile", default="agent", help="metering profile (agent, nfstream, zeek)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the flow topic if created")
    parser.add_argument("--drain-timeout", type=float, default=10.0,
                        help="on SIGTERM/SIGINT, seconds to send what was spooled or metered before exiting (default 10)")


def scenario_sources(directory: Path) -> tuple[list[CaptureSource], int]:
    """The captures of a scenario directory and the scenario's start time (ms); ScenarioError
    (a FinsaError) when its manifest cannot be read."""
    sources = [CaptureSource(c.path, c.institution, c.sensor) for c in manifest_captures(directory)]
    return sources, int(load_manifest(directory)["start_ms"])


def _first_packet_ms(path: Path) -> int:
    from finsa.collectors.agent.sources import first_packet_ms

    return first_packet_ms(path)


def _main_config(args: argparse.Namespace) -> int:
    """The deployed agent: ``--config FILE [--check]``."""
    from finsa.collectors.agent.agent import Agent
    from finsa.collectors.agent.config import load_agent_config, masked_view
    from finsa.errors import ConfigError

    try:
        config = load_agent_config(args.config)
    except ConfigError as exc:
        print(f"finsa collect: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(json.dumps(masked_view(config), indent=2))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        agent = Agent(config, args.config)
    except (FinsaError, ValueError) as exc:
        print(f"finsa collect: {exc}", file=sys.stderr)
        return 2
    reload_requested = threading.Event()
    shutdown = Shutdown("collect", args.drain_timeout, watchdog=True)
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    shutdown.install()
    shutdown.announce()
    try:
        agent.start()
    except (FinsaError, OSError) as exc:
        print(f"finsa collect: {exc}", file=sys.stderr)
        agent.stop()
        return 2
    from finsa.collectors.agent.sources import FAILURES

    left = agent.run(reload_requested, shutdown=shutdown)
    failed = int(FAILURES.total())
    print(f"finsa collect: {agent.totals['flows']} flows spooled, {agent.totals['dropped_batches']} batches "
          f"dropped (spool full), {left} batches left in the spool, {failed} sources failed", file=sys.stderr)
    return 1 if failed else 0


def main(args: argparse.Namespace) -> int:
    if args.config is not None:
        return _main_config(args)
    if args.check:
        print("finsa collect: --check needs --config FILE", file=sys.stderr)
        return 2
    if not args.broker:
        print("finsa collect: give --config FILE or --broker HOST:PORT", file=sys.stderr)
        return 2
    try:
        if args.scenario:
            sources, start_ms = scenario_sources(args.scenario)
        else:
            if not args.captures:
                print("finsa collect: give captures or --scenario DIR", file=sys.stderr)
                return 2
            sensor = args.sensor or f"{args.institution or 'unknown'}-sensor"
            sources = [CaptureSource(p, args.institution, sensor) for p in args.captures]
            start_ms = min(_first_packet_ms(p) for p in args.captures)
        ensure_topics(args.broker, {wire.TOPICS["flows"]: args.partitions})
        publisher = BatchPublisher(args.broker, client_id="finsa-collector").start()
        shutdown = Shutdown("collect", args.drain_timeout, watchdog=True)
        shutdown.install()
        rebase_ms = int(time.time() * 1000) - start_ms if args.rebase_time else 0
        speed = args.speed if args.speed > 0 else 1e9
        t0 = time.monotonic()
        flows = replay_all(sources, publisher.publish, start_ms, speed=speed, profile=args.profile,
                           rebase_ms=rebase_ms, stop=shutdown.draining)
        left = publisher.stop(shutdown.remaining_s if shutdown.requested else 30.0)
    except (CaptureError, FinsaError) as exc:
        print(f"finsa collect: {exc}", file=sys.stderr)
        return 2
    print(f"finsa collect: {flows} flows in {publisher.acknowledged} batches acknowledged, "
          f"{publisher.failed} failed, {left} unacknowledged, {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0 if left == 0 and publisher.failed == 0 else 1
