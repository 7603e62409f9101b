"""The agent's Prometheus endpoint: ``GET /metrics`` renders :data:`finsa.metrics.REGISTRY`.

A stdlib HTTP server in a daemon thread, meant for a loopback or management address only (it
serves counters, never flow data or configuration). Any other path answers 404.

>>> server = MetricsServer("127.0.0.1", 0).start()
>>> import urllib.request
>>> body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics").read().decode()
>>> "# TYPE" in body or body == "\\n"
True
>>> server.stop()
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from finsa.collectors.agent.http_thread import BackgroundServer

from finsa.metrics import REGISTRY, Registry

__all__ = ["MetricsServer"]


class MetricsServer(BackgroundServer):
    """Serve a registry on ``host:port`` (port 0 picks a free one, see :attr:`port`)."""

    def __init__(self, host: str, port: int, registry: Registry = REGISTRY) -> None:
        super().__init__(host, port)
        self.registry = registry

    def start(self) -> "MetricsServer":
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = registry.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # no per-request logging
                return

        self._serve_in_thread(Handler, "metrics-http")
        return self
