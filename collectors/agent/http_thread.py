"""A stdlib HTTP server in a daemon thread: what the agent's metrics and local endpoints share.

>>> from http.server import BaseHTTPRequestHandler
>>> class Hello(BaseHTTPRequestHandler):
...     def do_GET(self):
...         self.send_response(204); self.end_headers()
...     def log_message(self, *args): return
>>> server = BackgroundServer("127.0.0.1", 0)
>>> server._serve_in_thread(Hello, "hello")
>>> import urllib.request
>>> urllib.request.urlopen(f"http://127.0.0.1:{server.port}/").status
204
>>> server.stop(); server.stop()   # idempotent
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """``host:port`` (port 0: a free one, read back into :attr:`port` once serving)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None

    def _serve_in_thread(self, handler: type[BaseHTTPRequestHandler], name: str) -> None:
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True, name=name).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
