"""``finsa worker``: a stream worker against a Kafka broker and a store.

    finsa worker --broker kafka1:9092 --clickhouse-url http://finsa:secret@ch1:8123
    finsa worker --broker 127.0.0.1:9092 --data-dir data/store --web-port 8600

Several workers with the same ``--app-id`` share the flow topic's partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from finsa.streams.faust_app import WorkerSettings
from finsa.streams.processor import FlowProcessor
from finsa.streams.sector_stage import feed_intel
from finsa.streams.service import StreamService


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


async def _serve(args: argparse.Namespace) -> int:
    from finsa.storage.backend import open_store
    from finsa.app.offline import make_engine

    store = open_store(data_dir=args.data_dir, url=clickhouse_url(args))
    store.migrate()
    stopping = asyncio.Event()
    verifier = batch_verifier(args.batch_keys)
    sector = None
    if args.registry:
        from finsa.sector.picture import SectorPicture
        from finsa.streams.sector_stage import SectorStage

        sector = SectorStage(SectorPicture.from_files(args.registry, args.inventory), store, verifier=verifier)
    registry_watcher = watch_registry(args.registry, sector)
    engine = make_engine(args.detectors, args.registry)
    watcher = watch_detectors(args.detectors, engine, args.registry)
    if sector is not None:
        sector.blocklist_sinks.append(feed_intel(engine))
    # --- SOC (issue 16): analysts' accepted allowlist entries reach the detectors live
    from finsa.streams.feedback import FeedbackPoller
    feedback = FeedbackPoller(store, engine).start()
    from finsa.app.soc_wiring import start_clickhouse_http, start_notifier
    notifier = start_notifier(args.notify, sector, args.state_dir)
    clickhouse_http = start_clickhouse_http(args.clickhouse_http, store, args.data_dir or args.state_dir, args.web_host)
    # --- end SOC
    processor = FlowProcessor(store, engine, should_stop=stopping.is_set,
                              verifier=verifier, flow_observers=[sector.observe_flows] if sector else [])
    settings = WorkerSettings(args.broker, app_id=args.app_id, partitions=args.partitions,
                              session_timeout_s=args.session_timeout, datadir=args.state_dir,
                              broker_credentials=broker_credentials(args))
    service = StreamService(settings, processor, sector)
    runner = None
    if args.web_port:
        from finsa.dashboards.webview import start_webview

        from finsa.sector.indicators_http import indicator_routes

        routes = indicator_routes(sector.blocklist) if sector is not None else None
        runner = await start_webview(store, host=args.web_host, port=args.web_port, extra_routes=routes)
    loop = asyncio.get_running_loop()
    await service.start()
    print(f"finsa worker: consuming from {args.broker} as {args.app_id}", file=sys.stderr, flush=True)
    try:
        while not stopping.is_set() and not service.app.should_stop:
            _own_stop_signals(loop, stopping)
            if service.failed is not None:
                raise RuntimeError(f"stream worker failed: {service.failed!r}")
            await asyncio.sleep(0.2)
    finally:
        stopping.set()
        await service.stop()
        if runner is not None:
            await runner.cleanup()
        if watcher is not None:
            watcher.stop()
        if registry_watcher is not None:
            registry_watcher.stop()
        feedback.stop()  # SOC (issue 16)
        if clickhouse_http is not None:
            clickhouse_http.stop()
        if notifier is not None:
            notifier.stop()
        store.close()
    return 0


UNSIGNED_WARNING = ("finsa worker: WARNING: started without --batch-keys: this worker ACCEPTS UNSIGNED flows, "
                    "ARP bindings, alerts and heartbeats: any client able to produce can forge any institution's data")


def batch_verifier(key_dir: Path | None):  # noqa: ANN201 - a BatchVerifier or None
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


def _own_stop_signals(loop: asyncio.AbstractEventLoop, stopping: asyncio.Event) -> None:
    """SIGINT/SIGTERM set ``stopping``. Faust's worker installs its own handlers as it starts (they
    stop Faust but not this command, which then never exits), so ours are put back each round."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)


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


def broker_credentials(args: argparse.Namespace):  # noqa: ANN201 - a faust credentials object or None
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


def watch_detectors(path: Path | None, engine, registry_path: Path | None):  # noqa: ANN001, ANN201
    """Reload the detectors file on change (an invalid file is refused, the running config kept)."""
    if path is None:
        return None
    from finsa.detectors.reload import ConfigWatcher

    registry = None
    if registry_path is not None:
        from finsa.institutions import load_registry

        registry = load_registry(registry_path)
    watcher = ConfigWatcher(path, lambda cfg: engine.reconfigure(cfg, registry), registry=registry)
    watcher.load()
    watcher.start()
    return watcher


def watch_registry(path: Path | None, sector):  # noqa: ANN001, ANN201 - a SectorStage or None
    """Give an edited institutions file to the sector picture without a restart (an invalid file is
    refused with every problem, the running registry kept)."""
    if path is None or sector is None:
        return None
    from finsa.institutions import load_registry
    from finsa.settings import FileWatcher

    watcher = FileWatcher(path, load_registry, sector.use_registry,
                          on_error=lambda problems: print(f"finsa worker: {path} refused, keeping the running "
                                                          f"registry: {'; '.join(problems)}", file=sys.stderr, flush=True))
    watcher.start()
    return watcher


def main(args: argparse.Namespace) -> int:
    if args.inventory is not None and args.registry is None:
        print("finsa worker: --inventory needs --registry (assets are checked against the institutions)",
              file=sys.stderr)
        return 2
    return asyncio.run(_serve(args))
