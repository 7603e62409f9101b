"""The broker gate: TLS and SASL/SCRAM in front of a broker that cannot enforce them itself.

Tansu 0.6.0 (the embedded broker) cannot check SCRAM users with the storage engines compiled in
(memory and S3 keep no credentials) and its TLS options cannot be given together, so the gate
does both (see docs/security.md). It listens where clients connect, terminates TLS with Python's
``ssl``, answers the Kafka SASL handshake itself with :class:`~finsa.streams.scram.ScramServer`,
and only then relays the connection to the broker on a loopback port. Before login it relays
only ``ApiVersions``; anything else closes the connection. After login each request's API key is
checked against the user's role (an ``agent`` may produce, not fetch, and create no topic), the
topics an agent's Produce and Metadata requests name against the data topics
(:mod:`~finsa.streams.gate_acl`: never the worker's internal or changelog topics), and relayed
unchanged.

The broker must advertise the gate's address (``--advertised-listener-url``) so that clients come
back through it; :class:`~finsa.streams.broker.EmbeddedBroker` does this when given a gate.

>>> from finsa.streams.scram import ScramStore
>>> gate = BrokerGate(ScramStore(), upstream=("127.0.0.1", 9092), port=19093)   # inert until start()
>>> gate.bootstrap
'127.0.0.1:19093'
"""

from __future__ import annotations

import asyncio
import ssl
import struct
import threading
from typing import Mapping

from finsa.errors import BrokerError
from finsa.metrics import REGISTRY
from finsa.streams.gate_acl import AGENT_TOPICS, TopicPolicy
from finsa.streams.scram import MECHANISMS, ScramError, ScramServer, ScramStore

__all__ = ["AGENT_API_KEYS", "BrokerGate", "ROLES", "TOPIC_POLICIES", "server_ssl_context"]

LOGINS = REGISTRY.counter("finsa_broker_gate_logins_total", "SASL logins at the broker gate, by outcome", ["outcome"])
REFUSED = REGISTRY.counter("finsa_broker_gate_refused_total", "Connections the gate closed, by reason", ["reason"])

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE = 58, 33, 34
#: What an institution's agent needs: Produce, Metadata, ApiVersions, InitProducerId, and client
#: telemetry (GetTelemetrySubscriptions, PushTelemetry). No CreateTopics: the sector creates topics.
AGENT_API_KEYS = frozenset({0, 3, 18, 22, 71, 72})
#: role -> the topics its Produce and Metadata requests may name (a role not listed: any topic).
TOPIC_POLICIES: Mapping[str, TopicPolicy] = {"agent": TopicPolicy(AGENT_TOPICS)}
#: role -> allowed API keys (None: every API).
ROLES: Mapping[str, frozenset[int] | None] = {"agent": AGENT_API_KEYS, "service": None}
MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_LOGIN_FRAME_BYTES = 64 * 1024  #: before login, so strangers cannot make the gate hold large buffers


def server_ssl_context(cert_file: str, key_file: str, client_ca_file: str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context; with ``client_ca_file`` clients must also present a certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        ctx.load_verify_locations(client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _Refused(Exception):
    def __init__(self, reason: str, reply: bytes = b"") -> None:
        super().__init__(reason)
        self.reason, self.reply = reason, reply


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _skip_tags(data: bytes, pos: int) -> int:
    count, pos = _uvarint(data, pos)
    for _ in range(count):
        _, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        pos += size
    return pos


def _header(frame: bytes) -> tuple[int, int, int, int]:
    """api_key, api_version, correlation_id and where the client id ends."""
    api_key, version, corr, id_len = struct.unpack_from(">hhih", frame)
    return api_key, version, corr, 10 + max(id_len, 0)


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _handshake_reply(corr: int, error: int, mechanisms: list[str]) -> bytes:
    return struct.pack(">ihi", corr, error, len(mechanisms)) + b"".join(_string(m) for m in mechanisms)


def _authenticate_reply(corr: int, version: int, error: int, message: str | None, token: bytes) -> bytes:
    if version >= 2:  # flexible: compact strings/bytes, tagged fields in header and body
        msg = b"\x00" if message is None else _compact(message.encode())
        return struct.pack(">ib", corr, 0) + struct.pack(">h", error) + msg + _compact(token) + struct.pack(">qb", 0, 0)
    msg = struct.pack(">h", -1) if message is None else _string(message)
    body = struct.pack(">ih", corr, error) + msg + struct.pack(">i", len(token)) + token
    return body + (struct.pack(">q", 0) if version >= 1 else b"")


def _compact(raw: bytes) -> bytes:
    n, out = len(raw) + 1, bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + raw


def _auth_bytes(frame: bytes, version: int, body_at: int) -> bytes:
    if version >= 2:
        pos = _skip_tags(frame, body_at)
        size, pos = _uvarint(frame, pos)
        return frame[pos:pos + size - 1]
    (size,) = struct.unpack_from(">i", frame, body_at)
    return frame[body_at + 4:body_at + 4 + size]


async def _read_frame(reader: asyncio.StreamReader, limit_bytes: int = MAX_FRAME_BYTES) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 0 <= size <= limit_bytes:
        raise _Refused("frame_size")
    return await reader.readexactly(size)


def _write_frame(writer: asyncio.StreamWriter, body: bytes) -> None:
    writer.write(struct.pack(">i", len(body)) + body)


class BrokerGate:
    """Listen on ``host:port`` (TLS when ``ssl_context``), log clients in, relay to ``upstream``.

    ``roles`` maps a role name (a user's role in the store) to the API keys it may call (None: all);
    a user whose role is not listed may call nothing.
    ``start()`` runs the gate on its own thread's event loop; ``stop()`` closes it.
    """

    def __init__(self, store: ScramStore, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, mechanisms: tuple[str, ...] = tuple(MECHANISMS),
                 roles: Mapping[str, frozenset[int] | None] = ROLES,
                 topic_policies: Mapping[str, TopicPolicy] = TOPIC_POLICIES) -> None:
        unknown = [m for m in mechanisms if m not in MECHANISMS]
        if unknown:
            raise BrokerError(f"the gate supports {sorted(MECHANISMS)}, not {unknown}")
        self.store, self.upstream, self.host, self.port = store, upstream, host, port
        self.ssl_context, self.mechanisms, self.roles = ssl_context, list(mechanisms), dict(roles)
        self.topic_policies = dict(topic_policies)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> "BrokerGate":
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="finsa-broker-gate", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or self._server is None:
            self.stop()
            raise BrokerError(f"the broker gate could not listen on {self.bootstrap}")
        return self

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._client, self.host, self.port, ssl=self.ssl_context))
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError:
            self._server = None
        ready.set()
        if self._server is not None:
            self._loop.run_forever()
        self._loop.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = self._server = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __enter__(self) -> "BrokerGate":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        up_writer = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            user = await self._login(reader, writer, up_reader, up_writer)
            role = self.store.roles.get(user, "")
            await self._relay(reader, writer, up_reader, up_writer, self.roles.get(role, frozenset()),
                              self.topic_policies.get(role))
        except _Refused as refused:
            REFUSED.inc(reason=refused.reason)
            if refused.reply:
                _write_frame(writer, refused.reply)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, struct.error, IndexError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    async def _login(self, reader, writer, up_reader, up_writer) -> str:  # asyncio streams
        """Answer ApiVersions (from the broker) and the SASL exchange; return the user."""
        scram: ScramServer | None = None
        raw_tokens = False
        while True:
            frame = await _read_frame(reader, MAX_LOGIN_FRAME_BYTES)
            if raw_tokens:  # SaslHandshake v0: bare SASL tokens, no Kafka header
                reply, user = self._scram_step(scram, frame, raw=True)
                _write_frame(writer, reply)
                await writer.drain()
                if user:
                    return user
                continue
            api_key, version, corr, body_at = _header(frame)
            if api_key == API_VERSIONS:
                _write_frame(up_writer, frame)
                await up_writer.drain()
                _write_frame(writer, await _read_frame(up_reader))
            elif api_key == SASL_HANDSHAKE and scram is None:
                (size,) = struct.unpack_from(">h", frame, body_at)
                mechanism = frame[body_at + 2:body_at + 2 + size].decode("utf-8", "replace")
                if mechanism not in self.mechanisms:
                    _write_frame(writer, _handshake_reply(corr, UNSUPPORTED_SASL_MECHANISM, self.mechanisms))
                    LOGINS.inc(outcome="unsupported_mechanism")
                else:
                    scram, raw_tokens = ScramServer(self.store, mechanism), version == 0
                    _write_frame(writer, _handshake_reply(corr, 0, self.mechanisms))
            elif api_key == SASL_AUTHENTICATE and scram is not None:
                token = _auth_bytes(frame, version, body_at)
                reply, user = self._scram_step(scram, token, raw=False, corr=corr, version=version)
                _write_frame(writer, reply)
                if user:
                    await writer.drain()
                    return user
            else:
                raise _Refused("not_authenticated")
            await writer.drain()

    @staticmethod
    def _scram_step(scram: ScramServer, token: bytes, raw: bool, corr: int = 0,
                    version: int = 0) -> tuple[bytes, str | None]:
        try:
            answer = scram.step(token)
        except ScramError:
            LOGINS.inc(outcome="failed")
            text = f"Authentication failed during authentication due to invalid credentials with SASL mechanism {scram.mechanism}"
            raise _Refused("login_failed", b"" if raw else
                           _authenticate_reply(corr, version, SASL_AUTHENTICATION_FAILED, text, b"")) from None
        if scram.user is not None:
            LOGINS.inc(outcome="ok")
        return (answer if raw else _authenticate_reply(corr, version, 0, None, answer)), scram.user

    async def _relay(self, reader, writer, up_reader, up_writer, allowed: frozenset[int] | None,
                     topics: TopicPolicy | None = None) -> None:
        """Requests go up whole (each API key, and the topics named, checked), responses come back as bytes."""
        back = asyncio.ensure_future(self._pipe(up_reader, writer))
        try:
            while not back.done():
                frame = await _read_frame(reader)
                if allowed is not None and struct.unpack_from(">h", frame)[0] not in allowed:
                    raise _Refused("api_not_allowed")
                if topics is not None and not topics.allows(frame):
                    raise _Refused("topic_not_allowed")
                _write_frame(up_writer, frame)
                await up_writer.drain()
        finally:
            back.cancel()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(1 << 16):
            dst.write(data)
            await dst.drain()
        dst.close()
