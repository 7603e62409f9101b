"""A UDP receiver for flow export: datagrams in, FLOW batches to a sink, in one thread.

``ExportReceiver`` binds a UDP socket on :meth:`start` (port 0 picks a free port, see
:attr:`address`), recognises each datagram's protocol (NetFlow v5, v9, IPFIX, sFlow v5) and
hands a :data:`finsa.wire.FLOW` batch to ``sink`` whenever ``max_rows`` records are waiting or
``flush_interval_s`` has passed since the last hand-over. :meth:`stop` flushes what is left. The
exporter identity for templates is the datagram's source address. A sink that raises is counted
(``finsa_export_sink_errors_total``) and the batch dropped; the receiver keeps running.

>>> got = []
>>> r = ExportReceiver("127.0.0.1", 0, "bank-a", "edge-1", got.append)
>>> r.start(); r.stop(); got
[]
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable

from finsa.collectors.export.decoder import ExportDecoder
from finsa.metrics import REGISTRY
from finsa.wire import RecordBatch

__all__ = ["ExportReceiver"]

SINK_ERRORS = REGISTRY.counter("finsa_export_sink_errors_total", "Flow batches the sink refused (dropped)")
_RECV_BYTES = 65535
_SOCKET_BUFFER_BYTES = 8 << 20


class ExportReceiver:
    """Receive export datagrams on ``host:port`` and deliver FLOW batches to ``sink``."""

    def __init__(self, host: str, port: int, institution_id: str, sensor_id: str,
                 sink: Callable[[RecordBatch], object], flush_interval_s: float = 1.0,
                 max_rows: int = 10000) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range")
        if flush_interval_s <= 0 or max_rows < 1:
            raise ValueError("flush_interval_s must be > 0 and max_rows >= 1")
        self.host, self.port, self.sink = host, port, sink
        self.flush_interval_s, self.max_rows = flush_interval_s, max_rows
        self.decoder = ExportDecoder(institution_id, sensor_id)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.datagrams = 0

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); valid after start."""
        if self._sock is None:
            raise RuntimeError("the receiver is not started")
        return self._sock.getsockname()[:2]

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the receiver is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER_BYTES)
        except OSError:
            pass  # the kernel caps it; the default still works
        sock.bind((self.host, self.port))
        sock.settimeout(min(self.flush_interval_s, 0.1))
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="finsa-export-receiver", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop receiving, deliver what was decoded and close the socket."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout_s)
        self._thread = None
        if self._sock is not None:
            self._sock.close()
        self._flush()

    def _run(self) -> None:
        sock, decoder = self._sock, self.decoder
        assert sock is not None
        next_flush = time.monotonic() + self.flush_interval_s
        while not self._stopping.is_set():
            try:
                data, peer = sock.recvfrom(_RECV_BYTES)
            except socket.timeout:
                data = None
            except OSError:
                if self._stopping.is_set():
                    break
                continue
            if data:
                self.datagrams += 1
                decoder.feed(data, _peer_address(peer), time.time_ns() // 1_000_000)
            now = time.monotonic()
            if decoder.rows >= self.max_rows or now >= next_flush:
                self._flush()
                next_flush = now + self.flush_interval_s

    def _flush(self) -> None:
        batch = self.decoder.take()
        if batch is None:
            return
        try:
            self.sink(batch)
        except Exception:  # noqa: BLE001 - a failing sink must not stop the receiver
            SINK_ERRORS.inc()

    def __enter__(self) -> "ExportReceiver":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _peer_address(peer: tuple) -> str:
    host = peer[0]
    return host[7:] if host.startswith("::ffff:") else host
