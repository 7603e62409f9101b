"""The agent's loopback endpoint for the institution's analyst: pcap cuts and address translation.

It listens on a loopback address of the agent host only and answers requests carrying its token
in ``Authorization: Bearer`` (never a cookie, never a URL parameter):

- ``GET /pcap?a=IP&b=IP[&a_port=N&b_port=N&protocol=N]&from_ms=&to_ms=[&pseudonyms=1]``: the packets
  of one flow from the agent's :class:`~finsa.collectors.agent.packet_ring.PacketRing` as a pcap
  (``pseudonyms=1``: a and b as the centre shows them, read in clear here first);
- ``GET /translate?address=X``: one address's readings (:func:`~finsa.collectors.agent.translate.translate`);
- ``POST /translate`` with ``{"addresses": [...]}`` (JSON, at most
  :data:`~finsa.collectors.agent.translate.MAX_BATCH` addresses or networks): all their readings in
  one answer, ``{"results": [{address, pseudonym, clear}, ...]}``, so a result table costs one call.

Browsers: the web view's pages call this endpoint from the analyst's browser (the centre never
sees the token or a clear address). Cross-origin requests are answered for exactly one origin,
``web_origin`` (the web view's): a preflight (``OPTIONS``) from it for these two paths, GET/POST and
the headers Authorization and Content-Type gets ``Access-Control-Allow-Origin: <web_origin>``
(never ``*``, never credentials); a request or preflight from any other origin is refused with 403
before the token is looked at, and so is every other method or path. Requests without an
``Origin`` (curl on the agent host) are served as before.

>>> from finsa.collectors.agent.packet_ring import PacketRing
>>> LocalEndpoint(PacketRing(), web_origin="https://finsa.centre.example/").web_origin
'https://finsa.centre.example'
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import secrets
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from finsa.collectors.agent.http_thread import BackgroundServer
from finsa.collectors.agent.translate import clear_of, translate, translate_many
from finsa.institutions import agent_origin
from finsa.metrics import REGISTRY

if TYPE_CHECKING:
    from finsa.collectors.agent.packet_ring import PacketRing

__all__ = ["LocalEndpoint", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 64 * 1024
_PATHS = {"/pcap": ("GET",), "/translate": ("GET", "POST")}
_ALLOWED_HEADERS = {"authorization", "content-type"}
REQUESTS = REGISTRY.counter("finsa_agent_endpoint_requests_total",
                            "Requests to the agent's loopback endpoint, by path and outcome", ["path", "outcome"])
TRANSLATED = REGISTRY.counter("finsa_agent_translated_addresses_total", "Addresses the agent's endpoint translated")


class _Refused(Exception):
    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status, self.outcome = status, outcome


class LocalEndpoint(BackgroundServer):
    """The endpoint of the module docstring; inert until :meth:`start`."""

    def __init__(self, ring: "PacketRing | None", host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 pseudonymiser: Any = None, web_origin: str | None = None) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the agent's endpoint listens on a loopback address only")
        super().__init__(host, port)
        self.ring, self.pseudonymiser = ring, pseudonymiser
        self.web_origin = agent_origin(web_origin) if web_origin else None
        self.token = token or secrets.token_urlsafe(24)

    def start(self) -> "LocalEndpoint":
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint._serve(self, "GET")

            def do_POST(self) -> None:
                endpoint._serve(self, "POST")

            def do_OPTIONS(self) -> None:
                endpoint._serve(self, "OPTIONS")

            def log_message(self, *args: object) -> None:
                return

        self._serve_in_thread(Handler, "agent-endpoint")
        return self

    # --- one request ---------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        cors = self._cors(handler)
        try:
            if cors is False:
                raise _Refused(403, "this origin may not call the agent", "origin")
            if path not in _PATHS:
                raise _Refused(404, "no such path", "path")
            if method == "OPTIONS":
                self._preflight(handler, path)
                REQUESTS.inc(path=path, outcome="preflight")
                return
            if method not in _PATHS[path]:
                raise _Refused(405, "method not allowed here", "method")
            given = handler.headers.get("Authorization", "").removeprefix("Bearer ")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise _Refused(401, "give the endpoint's token in Authorization: Bearer", "token")
            status, body, headers = self._answer(handler, method, path)
        except _Refused as exc:
            REQUESTS.inc(path=path if path in _PATHS else "other", outcome=exc.outcome)
            body = json.dumps({"error": str(exc)}).encode()
            self._reply(handler, exc.status, body, {"Content-Type": "application/json"}, bool(cors))
            return
        REQUESTS.inc(path=path, outcome="ok")
        self._reply(handler, status, body, headers, bool(cors))

    def _cors(self, handler: BaseHTTPRequestHandler) -> bool | None:
        """None: no Origin (not a browser's cross-origin call); True: the web view; False: refused."""
        origin = handler.headers.get("Origin")
        if origin is None:
            return None
        return self.web_origin is not None and hmac.compare_digest(origin.encode(), self.web_origin.encode())

    def _preflight(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        method = handler.headers.get("Access-Control-Request-Method", "")
        asked = {h.strip().lower() for h in handler.headers.get("Access-Control-Request-Headers", "").split(",")
                 if h.strip()}
        if self.web_origin is None or handler.headers.get("Origin") is None:
            raise _Refused(403, "no cross-origin calls are configured", "origin")
        if method not in _PATHS[path] or not asked <= _ALLOWED_HEADERS:
            raise _Refused(403, "only GET/POST with Authorization and Content-Type", "preflight")
        headers = {"Access-Control-Allow-Methods": ", ".join(_PATHS[path]),
                   "Access-Control-Allow-Headers": "Authorization, Content-Type", "Access-Control-Max-Age": "600"}
        if handler.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
            headers["Access-Control-Allow-Private-Network"] = "true"  # a page of the centre calling loopback
        self._reply(handler, 204, b"", headers, True)

    def _reply(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str],
               cors: bool) -> None:
        handler.send_response(status)
        if cors and self.web_origin is not None:
            handler.send_header("Access-Control-Allow-Origin", self.web_origin)
            handler.send_header("Access-Control-Expose-Headers", "X-Finsa-Packets, Content-Disposition")
        handler.send_header("Vary", "Origin")
        handler.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if body:
            handler.wfile.write(body)

    def _answer(self, handler: BaseHTTPRequestHandler, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
        query = dict(parse_qsl(urlsplit(handler.path).query))
        if path == "/pcap":
            return self._cut(query)
        if self.pseudonymiser is None:
            raise _Refused(404, "this agent does not pseudonymise", "no_key")
        try:
            if method == "POST":
                results: Any = {"results": translate_many(self.pseudonymiser, self._addresses(handler))}
                TRANSLATED.inc(len(results["results"]))
            else:
                results = translate(self.pseudonymiser, query.get("address", ""))
                TRANSLATED.inc()
        except ValueError as exc:
            raise _Refused(400, str(exc), "bad_request") from None
        return 200, json.dumps(results).encode(), {"Content-Type": "application/json"}

    @staticmethod
    def _addresses(handler: BaseHTTPRequestHandler) -> list:
        if handler.headers.get_content_type() != "application/json":
            raise _Refused(415, "send JSON (Content-Type: application/json)", "bad_request")
        try:
            length = int(handler.headers.get("Content-Length", ""))
        except ValueError:
            raise _Refused(411, "give Content-Length", "bad_request") from None
        if not 0 < length <= MAX_BODY_BYTES:
            raise _Refused(413, f"the body is at most {MAX_BODY_BYTES} bytes", "bad_request")
        try:
            body = json.loads(handler.rfile.read(length))
        except ValueError:
            raise _Refused(400, "the body is not JSON", "bad_request") from None
        if not isinstance(body, dict) or set(body) != {"addresses"} or not isinstance(body["addresses"], list):
            raise _Refused(400, 'give {"addresses": [...]} and nothing else', "bad_request")
        return body["addresses"]

    def _cut(self, query: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        if self.ring is None:
            raise _Refused(404, "this agent keeps no packets", "no_ring")
        try:
            ints = {k: int(query[k]) for k in ("a_port", "b_port", "protocol") if query.get(k)}
            a, b = query["a"], query["b"]
            if query.get("pseudonyms") == "1" and self.pseudonymiser is not None:  # as the centre shows them
                a, b = (clear_of(self.pseudonymiser, x) or x for x in (a, b))
            out = io.BytesIO()
            count = self.ring.cut(out, a=a, b=b, from_ms=int(query["from_ms"]), to_ms=int(query["to_ms"]), **ints)
        except (KeyError, ValueError):
            raise _Refused(400, "give a, b, from_ms, to_ms (and optionally a_port, b_port, protocol)",
                           "bad_request") from None
        return 200, out.getvalue(), {"Content-Type": "application/vnd.tcpdump.pcap", "X-Finsa-Packets": str(count),
                                     "Content-Disposition": 'attachment; filename="finsa-cut.pcap"'}
