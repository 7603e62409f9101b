"""Wiring of the SOC pieces into ``finsa run`` and ``finsa worker`` (issue 16), kept apart from them.

:func:`start_notifier` loads a notifications config, starts a
:class:`~finsa.notify.notifier.Notifier` (its outbox relative to ``base_dir`` unless absolute)
and makes it listen to the sector stage's records (warnings, emergencies, alerts). Without a
sector stage (no registry) nothing produces warnings: it refuses to start, rather than look
configured and never send.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_notifier(config_path: Path | None, sector: Any, base_dir: Path) -> Any:
    """The started notifier, or None without a config."""
    if config_path is None:
        return None
    from finsa.notify.config import load_notify_config
    from finsa.notify.notifier import Notifier

    if sector is None:
        raise SystemExit("--notify needs the sector picture (a registry: --registry, or finsa run's scenario)")
    config = load_notify_config(config_path)
    if not config.outbox.path.is_absolute():
        config.outbox.path = base_dir / config.outbox.path
    notifier = Notifier(config, _LiveRegistry(sector)).start()
    sector.record_sinks.append(notifier.offer)
    return notifier


class _LiveRegistry:
    """The sector stage's current registry (an edited institutions file reaches the routing too)."""

    def __init__(self, sector: Any) -> None:
        self._sector = sector

    @property
    def institution(self) -> list:
        return list(self._sector.picture.registry.institution)


def start_clickhouse_http(port: int, store: Any, data_dir: Path, host: str = "127.0.0.1",
                          institutions: list[str] | None = None, out: Any = print) -> Any:
    """Serve the embedded store's ClickHouse HTTP interface, read-only per tenant, for Grafana
    (None when ``port`` is 0 or the store is a ClickHouse server, which Grafana reaches itself)."""
    if not port:
        return None
    from finsa.storage.chdb_backend import ChdbStore
    from finsa.storage.tenant_http import TenantHTTPEndpoint, tenant_credentials

    if not isinstance(store, ChdbStore):
        raise SystemExit("--clickhouse-http serves the embedded store (--data-dir); point Grafana at the server")
    if institutions is None:
        institutions = [row[0] for row in store.query("SELECT id FROM institutions ORDER BY id").rows]
    directory = data_dir / "keys" / "clickhouse-http"
    users = tenant_credentials(directory, institutions)
    endpoint = TenantHTTPEndpoint(store, users, host=host, port=port).start()
    out(f"finsa: ClickHouse HTTP (read-only, per tenant) at {endpoint.url}: users "
        f"{', '.join(sorted(users))}; passwords in {directory}/<user>.password", flush=True)
    return endpoint
