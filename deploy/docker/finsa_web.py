"""The web role's entry point: finsa's web threat view on a ClickHouse cluster, on all interfaces.

``finsa worker --web-port`` serves the same view but binds 127.0.0.1 (a container's own
loopback); this serves it alone, reachable from outside the container, with no consumer.
Settings come from the environment (secrets as files, never as values):

    FINSA_CLICKHOUSE_URL            http://user@host:8123 (no password in it)
    FINSA_CLICKHOUSE_PASSWORD_FILE  file holding the password (e.g. /run/secrets/...)
    FINSA_WEB_USERS_FILE            the web view's users file (finsa.dashboards.users)
    FINSA_WEB_PORT                  default 8600
    FINSA_INSTITUTIONS_FILE         the institutions registry: its ``agent_url`` entries let each
                                    institution's analysts translate addresses through their agent
    FINSA_DRAIN_TIMEOUT_S           on SIGTERM/SIGINT, seconds to finish requests in progress (default 10)

It stops through :mod:`finsa.lifecycle`: the first SIGTERM/SIGINT closes the listener and lets the
requests in progress finish (at most FINSA_DRAIN_TIMEOUT_S), then the store is closed and it exits
0; a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit


def clickhouse_url(environ: dict[str, str]) -> str:
    """FINSA_CLICKHOUSE_URL with the password file's content put in as the password."""
    parts = urlsplit(environ["FINSA_CLICKHOUSE_URL"])
    password_file = environ.get("FINSA_CLICKHOUSE_PASSWORD_FILE")
    if not password_file:
        return environ["FINSA_CLICKHOUSE_URL"]
    password = Path(password_file).read_text().strip()
    user = parts.username or "default"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}" + (
        f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def tls_context(environ: dict[str, str]):
    """HTTPS (TLS 1.2+) when FINSA_WEB_TLS_CERT and FINSA_WEB_TLS_KEY name the certificate files."""
    cert, key = environ.get("FINSA_WEB_TLS_CERT"), environ.get("FINSA_WEB_TLS_KEY")
    if not cert or not key:
        return None
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def serve(environ: dict[str, str], shutdown=None) -> None:
    from finsa.dashboards.users import check_institutions, load_users
    from finsa.dashboards.webview import start_webview
    from finsa.institutions import agent_origins, load_registry
    from finsa.lifecycle import Shutdown
    from finsa.storage.backend import open_store

    if shutdown is None:
        shutdown = Shutdown("web", float(environ.get("FINSA_DRAIN_TIMEOUT_S", "10")), watchdog=True,
                            setting="FINSA_DRAIN_TIMEOUT_S")
        shutdown.install_on_loop(asyncio.get_running_loop())
    shutdown.announce()

    store = open_store(url=clickhouse_url(environ))
    users_file = environ.get("FINSA_WEB_USERS_FILE")
    users = load_users(users_file) if users_file else None
    if users is not None:  # every analyst's institution must be in the registry (refused at start)
        check_institutions(users, [row[0] for row in store.query("SELECT id FROM institutions").rows])
    registry_file = environ.get("FINSA_INSTITUTIONS_FILE")
    origins = agent_origins(load_registry(registry_file)) if registry_file else {}
    runner = await start_webview(store, host="0.0.0.0", port=int(environ.get("FINSA_WEB_PORT", "8600")),
                                 announce=None, users=users, ssl_context=tls_context(environ),
                                 agent_origins=origins)
    while not shutdown.requested:
        await asyncio.sleep(0.2)
    try:
        await asyncio.wait_for(runner.cleanup(), max(shutdown.remaining_s, 0.1))
    except asyncio.TimeoutError:
        pass  # requests still running past the bound (or a second signal): stop anyway
    store.close()


if __name__ == "__main__":  # pragma: no cover
    from finsa.lifecycle import Shutdown

    stop = Shutdown("web", float(os.environ.get("FINSA_DRAIN_TIMEOUT_S", "10")), watchdog=True,
                    setting="FINSA_DRAIN_TIMEOUT_S")
    stop.install()  # before the loop, so they stay ours until the process ends
    asyncio.run(serve(dict(os.environ), stop))
