"""The deployed agent (``finsa collect --config``) publishes through TLS + SCRAM; the password
never appears in its output; plaintext clients and clients trusting another CA are refused."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from finsa import wire
from finsa.kafka import ensure_topics
from finsa.streams.broker_gate import LOGINS
from tests.collectors.agent.agent_helpers import wait_for, write_config
from tests.conftest import shared_data
from tests.security.conftest import PASSWORDS, needs_broker, quiet, read_batches

pytestmark = [pytest.mark.integration, needs_broker]


def _agent_config(tmp_path, broker, pki, password: str):
    pcap = shared_data("flows/nfstream") / "google_ssl.pcap"
    (tmp_path / "broker.password").write_text(password + "\n")
    path = write_config(tmp_path, broker.bootstrap, pcap=pcap)
    path.write_text(path.read_text().replace("partitions = 2\n", f'''partitions = 2
security_protocol = "SASL_SSL"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "bank-a-agent"
sasl_password_file = "{tmp_path / 'broker.password'}"
ssl_ca_file = "{pki.ca}"
'''))
    return path


def _collect(path, *extra: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "finsa.app.cli", "collect", "--config", str(path), *extra],
                          capture_output=True, text=True, timeout=timeout_s)


def _errors_of(settings: dict) -> list:
    errors: list = []
    admin = AdminClient(quiet(settings, errors))
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        admin.poll(0.1)
    return errors


def test_agent_publishes_through_tls_and_scram_and_never_prints_the_password(tmp_path, tls_broker, pki) -> None:
    password = PASSWORDS["bank-a-agent"]
    worker = tls_broker.client_settings("finsa-worker", PASSWORDS["finsa-worker"], "SCRAM-SHA-256", ca_file=pki.ca)
    ensure_topics(tls_broker.bootstrap, {wire.TOPICS["flows"]: 2, wire.TOPICS["heartbeats"]: 1,
                                         wire.TOPICS["alerts"]: 2}, extra=quiet(worker))  # the sector's job, not agents'
    path = _agent_config(tmp_path, tls_broker, pki, password)
    check = _collect(path, "--check")
    assert check.returncode == 0, check.stderr
    assert '"security_protocol": "SASL_SSL"' in check.stdout and '"sasl_password": "**********"' in check.stdout
    done = _collect(path)
    assert done.returncode == 0, done.stderr
    assert "0 batches left" in done.stderr
    for text in (check.stdout, check.stderr, done.stdout, done.stderr):
        assert password not in text
    got = read_batches(worker, wire.TOPICS["flows"], partitions=2)
    assert got and set(wire.RecordBatch.concat(got).columns["institution_id"]) == {"bank-a"}


def test_agent_with_a_wrong_password_is_refused_and_does_not_print_it(tmp_path, tls_broker, pki) -> None:
    wrong = "wrong-Pw-31337-nobody-knows"
    path = _agent_config(tmp_path, tls_broker, pki, wrong)
    failed_before = LOGINS.value(outcome="failed")
    proc = subprocess.Popen([sys.executable, "-m", "finsa.app.cli", "collect", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        refused = wait_for(lambda: LOGINS.value(outcome="failed") > failed_before, timeout_s=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert refused
    assert "batches left in the spool" in err and " 0 batches left" not in err  # nothing was delivered
    assert wrong not in out and wrong not in err
    spooled = b"".join(p.read_bytes() for p in (tmp_path / "spool").rglob("*") if p.is_file())
    assert wrong.encode() not in spooled


def test_plaintext_clients_are_refused_on_the_tls_port(tls_broker) -> None:
    logins_before = LOGINS.total()
    settings = tls_broker.client_settings("bank-a-agent", PASSWORDS["bank-a-agent"])
    settings["security.protocol"] = "sasl_plaintext"  # right credentials, no TLS
    errors = _errors_of(settings)
    assert errors and all(e.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN) for e in errors), errors
    assert LOGINS.total() == logins_before  # never got as far as SASL


def test_a_client_trusting_another_ca_does_not_connect(tls_broker, pki) -> None:
    logins_before = LOGINS.total()
    errors = _errors_of(tls_broker.client_settings("bank-a-agent", PASSWORDS["bank-a-agent"], ca_file=pki.other_ca))
    assert any("certificate verify failed" in e.str() for e in errors), errors
    assert LOGINS.total() == logins_before  # the password was never offered to this server
