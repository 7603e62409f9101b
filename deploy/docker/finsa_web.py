"""The web role's entry point: finsa's web threat view on a ClickHouse cluster, on all interfaces.

``finsa worker --web-port`` serves the same view but binds 127.0.0.1 (a container's own
loopback); this serves it alone, reachable from outside the container, with no consumer.
Settings come from the environment (secrets as files, never as values):

    FINSA_CLICKHOUSE_URL            http://user@host:8123 (no password in it)
    FINSA_CLICKHOUSE_PASSWORD_FILE  file holding the password (e.g. /run/secrets/...)
    FINSA_WEB_USERS_FILE            the web view's users file (finsa.dashboards.users)
    FINSA_WEB_PORT                  default 8600
"""

from __future__ import annotations

import asyncio
import os
import signal
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


async def serve(environ: dict[str, str]) -> None:
    from finsa.dashboards.users import check_institutions, load_users
    from finsa.dashboards.webview import start_webview
    from finsa.storage.backend import open_store

    store = open_store(url=clickhouse_url(environ))
    users_file = environ.get("FINSA_WEB_USERS_FILE")
    users = load_users(users_file) if users_file else None
    if users is not None:  # every analyst's institution must be in the registry (refused at start)
        check_institutions(users, [row[0] for row in store.query("SELECT id FROM institutions").rows])
    runner = await start_webview(store, host="0.0.0.0", port=int(environ.get("FINSA_WEB_PORT", "8600")),
                                 announce=None, users=users, ssl_context=tls_context(environ))
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await runner.cleanup()
    store.close()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(serve(dict(os.environ)))
