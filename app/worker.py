"""``finsa worker``: a stream worker against a Kafka broker and a store.

    finsa worker --broker kafka1:9092 --clickhouse-url http://finsa:secret@ch1:8123
    finsa worker --broker 127.0.0.1:9092 --data-dir data/store --web-port 8600

Several workers with the same ``--app-id`` share the flow topic's partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from finsa.app.stream_worker import StreamWorker, WorkerPlan
from finsa.lifecycle import Shutdown
from finsa.streams.faust_app import WorkerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, help="Kafka bootstrap servers")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", type=Path, help="embedded store directory (chdb)")
    where.add_argument("--clickhouse-url", help="ClickHouse server, http://user:password@host:8123")
    parser.add_argument("--app-id", default="finsa-worker", help="consumer group of the workers")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the topics it creates")
    parser.add_argument("--session-timeout", type=float, default=10.0, help="Kafka session timeout in seconds")
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/finsa-worker"), help="Faust's local state")
    parser.add_argument("--web-port", type=int, default=0, help="serve the web view on this port (0 = off)")
    parser.add_argument("--web-host", default="127.0.0.1", help="address the web view binds (default 127.0.0.1)")
    parser.add_argument("--clickhouse-password-file", type=Path,
                        help="file holding the ClickHouse password (kept out of the URL and the command line)")
    parser.add_argument("--sasl-username", help="SCRAM user of this worker on the broker")
    parser.add_argument("--sasl-password-file", type=Path, help="file holding the SCRAM password (never on the command line)")
    parser.add_argument("--sasl-mechanism", default="SCRAM-SHA-512", choices=["SCRAM-SHA-256", "SCRAM-SHA-512"])
    parser.add_argument("--ssl-ca-file", type=Path, help="CA that signed the broker's TLS certificate (turns TLS on)")
    parser.add_argument("--registry", type=Path, help="institutions file: enables the sector picture (campaigns, warnings, levels)")
    parser.add_argument("--inventory", type=Path,
                        help="inventory file of the institutions' services and providers (needs --registry)")
    parser.add_argument("--detectors", type=Path, help="detectors config file (finsa detectors check FILE)")
    parser.add_argument("--notify", type=Path, help="notifications config (finsa notify --check FILE)")  # SOC (issue 16)
    parser.add_argument("--clickhouse-http", type=int, default=0, metavar="PORT",  # SOC (issue 16)
                        help="with --data-dir: serve the store's ClickHouse HTTP interface for Grafana, read-only per tenant")
    parser.add_argument("--batch-keys", type=Path,
                        help="directory of <institution>.key signing keys: accept only batches signed by their institution")
    parser.add_argument("--drain-timeout", type=float, default=20.0,
                        help="on SIGTERM/SIGINT, seconds to finish the messages in hand before exiting (default 20)")
    parser.add_argument("--stall-after", type=float, default=10.0,
                        help="report a stall when messages wait and nothing is processed for this long (s, default 10)")
    parser.add_argument("--group-max", type=int, default=512,
                        help="flow messages detected together at most (groups are also bounded by 2 s and 32 MiB)")
    parser.add_argument("--flow-write-rows", type=int, default=200_000,
                        help="hold detected flows for one store write of up to this many rows (default 200000; "
                             "alerts are written at once)")
    parser.add_argument("--flow-write-within", type=float, default=0.0, metavar="SECONDS",
                        help="write held flows once the oldest waited this long (default 0: 2.5 group ages, 5 s)")
    parser.add_argument("--check", action="store_true",
                        help="validate the flags and the files they name, print the effective config, exit (0 valid, 2 not)")


def _plan(args: argparse.Namespace) -> WorkerPlan:
    verifier = batch_verifier(args.batch_keys)
    settings = WorkerSettings(args.broker, app_id=args.app_id, partitions=args.partitions,
                              session_timeout_s=args.session_timeout, datadir=args.state_dir,
                              broker_credentials=broker_credentials(args), flow_write_rows=args.flow_write_rows, group_max=args.group_max,
                              flow_write_within_s=args.flow_write_within)
    return WorkerPlan(settings, data_dir=args.data_dir, clickhouse_url=clickhouse_url(args), registry=args.registry,
                      inventory=args.inventory, detectors=args.detectors, verifier=verifier,
                      web=(args.web_host, args.web_port) if args.web_port else None,
                      stall_after_s=args.stall_after, name="worker",
                      notify=args.notify, notify_dir=args.state_dir, clickhouse_http=args.clickhouse_http,
                      http_dir=args.data_dir or args.state_dir, http_host=args.web_host)


async def _serve(args: argparse.Namespace, shutdown: Shutdown) -> int:
    shutdown.announce()
    worker = StreamWorker(_plan(args))
    try:
        await worker.start()
        print(f"finsa worker: consuming from {args.broker} as {args.app_id}", file=sys.stderr, flush=True)
        while not shutdown.requested and not worker.stopped:
            worker.check_stall()
            await asyncio.sleep(0.2)
        if worker.failed is not None:
            raise RuntimeError(f"stream worker failed: {worker.failed!r}")
        if not shutdown.requested:
            shutdown.request("the Faust worker stopped")
        await worker.drain(shutdown)
    finally:
        await worker.stop()
    return 0


UNSIGNED_WARNING = ("finsa worker: WARNING: started without --batch-keys: this worker ACCEPTS UNSIGNED flows, "
                    "ARP bindings, alerts and heartbeats: any client able to produce can forge any institution's data")


def batch_verifier(key_dir: Path | None):
    """The verifier of ``--batch-keys DIR`` (its ``_sector.key``, the workers' own signing key, is
    made mode 0600 when missing), or None after saying loudly that unsigned data is accepted."""
    import logging
    import secrets

    from finsa.batchauth import SERVICE_SIGNER, BatchVerifier, load_keys

    if key_dir is None:
        logging.getLogger("finsa.worker").warning(UNSIGNED_WARNING)
        print(UNSIGNED_WARNING, file=sys.stderr, flush=True)
        return None
    service = key_dir / f"{SERVICE_SIGNER}.key"
    if not service.exists():
        service.touch(mode=0o600)
        service.write_text(secrets.token_hex(32) + "\n")
    return BatchVerifier(load_keys(key_dir), key_dir=key_dir)


def clickhouse_url(args: argparse.Namespace) -> str | None:
    """The ClickHouse URL with the password from --clickhouse-password-file put in."""
    url = args.clickhouse_url
    if url is None or args.clickhouse_password_file is None:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    password = quote(args.clickhouse_password_file.read_text().strip(), safe="")
    netloc = f"{parts.username or 'default'}:{password}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def broker_credentials(args: argparse.Namespace):
    """SASL/SCRAM (and TLS) credentials for Faust from the command line, or None for plaintext."""
    import ssl

    import faust

    context = ssl.create_default_context(cafile=str(args.ssl_ca_file)) if args.ssl_ca_file else None
    if args.sasl_username:
        if args.sasl_password_file is None:
            raise SystemExit("finsa worker: --sasl-username needs --sasl-password-file")
        password = args.sasl_password_file.read_text().strip()
        return faust.SASLCredentials(username=args.sasl_username, password=password,
                                     mechanism=args.sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context) if context is not None else None


def main(args: argparse.Namespace) -> int:
    from finsa.app.worker_config import check_worker_args

    problems, effective = check_worker_args(args)
    if args.check or problems:
        if problems:
            print(f"finsa worker: {len(problems)} problem{'s' if len(problems) > 1 else ''}\n"
                  + "\n".join(f"  {p}" for p in problems), file=sys.stderr)
            return 2
        print(json.dumps(effective, indent=2, default=str))
        return 0
    shutdown = Shutdown("worker", args.drain_timeout, watchdog=True)
    shutdown.install()  # before the loop, so they stay ours until the process ends
    return asyncio.run(_serve(args, shutdown))
