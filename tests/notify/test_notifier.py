"""Notifications to real local receivers on 127.0.0.1: an aiohttp webhook server, an aiosmtpd SMTP
server requiring STARTTLS, UDP and TCP syslog listeners. Each message arrives once, signed; a
receiver that is down gets it later; a restarted notifier sends nothing twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import time

import pytest
from aiosmtpd.controller import Controller

from finsa.app.cli import main as finsa
from finsa.institutions import parse_registry
from finsa.notify.config import parse_notify_config
from finsa.notify.notifier import Notifier
from finsa.wire import ALERT, WARNING
from tests.notify.receivers import Mailbox, Webhook, free_port, tls_context

pytestmark = pytest.mark.integration

SECRET = "0123456789abcdef-test-key"
REGISTRY = parse_registry({"institution": [
    {"id": "bank-a", "name": "A", "subsector": "bank", "region": "north", "criticality": 3, "networks": ["10.1.0.0/16"]},
    {"id": "bank-b", "name": "B", "subsector": "bank", "region": "south", "criticality": 3, "networks": ["10.2.0.0/16"]},
    {"id": "ins-c", "name": "C", "subsector": "insurance", "region": "east", "criticality": 2, "networks": ["10.3.0.0/16"]},
]})


def _syslog_listeners():
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(5)
    tcp.settimeout(5)
    return udp, tcp


@pytest.fixture()
def receivers(tmp_path):
    context = tls_context(tmp_path)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port(), tls_context=context, require_starttls=True)
    smtp.start()
    udp, tcp = _syslog_listeners()
    hook_port = free_port()
    config = parse_notify_config({
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "retry_s": 0.05, "max_retry_s": 0.1},
        "receiver": {
            "hook": {"kind": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook", "secret": SECRET},
            "mail": {"kind": "email", "host": "127.0.0.1", "port": smtp.port, "ca_file": str(tmp_path / "cert.pem"),
                     "sender": "finsa@regulator.test", "to": ["soc@bank-a.test"]},
            "siem-udp": {"kind": "syslog", "host": "127.0.0.1", "port": udp.getsockname()[1], "transport": "udp"},
            "siem-tcp": {"kind": "syslog", "host": "127.0.0.1", "port": tcp.getsockname()[1], "transport": "tcp"}},
        "route": [{"institutions": ["bank-a"], "kinds": ["warning", "alert"], "min_severity": 4,
                   "receivers": ["hook", "mail", "siem-udp", "siem-tcp"]},
                  {"institutions": ["ins-c"], "kinds": ["warning"], "min_severity": 1, "receivers": ["hook"]}]})
    yield {"config": config, "mailbox": mailbox, "hook_port": hook_port, "udp": udp, "tcp": tcp}
    smtp.stop()
    udp.close()
    tcp.close()


def _warning(warning_id: str = "w-1", severity: int = 4) -> WARNING:
    return WARNING.make_batch({"warning_id": [warning_id], "time_ms": [1_780_000_000_000], "campaign_id": ["c1"],
                               "scope_kind": ["subsector"], "scope_id": ["bank"], "severity": [severity],
                               "title": ["port scan spreading in bank"], "body": ["block 203.0.113.66"],
                               "indicators": ['["203.0.113.66"]'], "techniques": ['["T1046"]'], "status": ["issued"]})


def _tcp_lines(tcp: socket.socket) -> str:
    conn, _ = tcp.accept()
    conn.settimeout(2)
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except socket.timeout:
        pass
    conn.close()
    return data.decode()


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_warning_reaches_every_receiver_of_the_warned_institution_once(receivers):
    hook = Webhook(receivers["hook_port"]).start()
    notifier = Notifier(receivers["config"], REGISTRY).start()
    try:
        assert notifier.offer("warning", _warning()) == 4  # bank-a: 4 receivers; bank-b: no route; ins-c: not warned
        assert notifier.offer("warning", _warning()) == 0  # the same warning again: nothing new
        assert notifier.offer("alert", ALERT.make_batch({"alert_id": ["x"], "institution_id": ["bank-a"], "severity": [2],
                                                         "detector": ["portscan"], "entity": ["203.0.113.66"]})) == 0
        _wait(lambda: hook.got and receivers["mailbox"].messages)
        datagram = receivers["udp"].recv(65536).decode()
        tcp_text = _tcp_lines(receivers["tcp"])
        _wait(lambda: notifier.outbox.counts().get("sent") == 4)
        assert notifier.outbox.counts() == {"sent": 4}
    finally:
        notifier.stop()
        hook.stop()
    assert len(hook.got) == 1
    headers, body = hook.got[0]
    expected = hmac.new(SECRET.encode(), headers["X-Finsa-Timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Finsa-Signature"] == "sha256=" + expected
    payload = json.loads(body)
    assert payload["institution"] == "bank-a" and payload["id"] == headers["X-Finsa-Id"]
    assert payload["indicators"] == ["203.0.113.66"]
    [(tls, rcpt, mail)] = receivers["mailbox"].messages
    assert tls and rcpt == ["soc@bank-a.test"]
    mail_id = re.search(r"X-Finsa-Message-Id: ([0-9a-f]{32})", mail).group(1)
    assert mail_id != payload["id"]  # one stable id per message: the record version and its receiver
    assert "port scan spreading in bank" in mail
    for line in (datagram, tcp_text.split(" ", 1)[1]):
        assert line.startswith("<132>1 2026-") and " finsa - warning [finsa@32473 id=" in line
        assert "CEF:0|finsa|finsa|1|warning|port scan spreading in bank|7|" in line and "cs1=bank-a" in line
    assert tcp_text.split(" ", 1)[0] == str(len(tcp_text.split(" ", 1)[1].encode()))


def test_a_receiver_down_gets_it_later_and_a_restart_sends_nothing_twice(receivers):
    cfg = receivers["config"]
    notifier = Notifier(cfg, REGISTRY, poll_s=0.05).start()
    warning = _warning("w-ins", 2)
    warning.columns["scope_id"][0] = "insurance"
    try:
        assert notifier.offer("warning", warning) == 1  # ins-c's webhook, which is down
        _wait(lambda: notifier.outbox.due(now_s=10**12) and notifier.outbox.due(now_s=10**12)[0].attempts >= 2)
        assert notifier.outbox.counts() == {"pending": 1}
    finally:
        notifier.stop()
    hook = Webhook(receivers["hook_port"]).start()
    try:
        again = Notifier(cfg, REGISTRY, poll_s=0.05).start()  # a restarted worker replays the same warning
        assert again.offer("warning", warning) == 0
        _wait(lambda: again.outbox.counts() == {"sent": 1})
        again.stop()
        third = Notifier(cfg, REGISTRY, poll_s=0.05).start()
        assert third.offer("warning", warning) == 0
        third.deliver_due()
        third.stop()
    finally:
        hook.stop()
    assert len(hook.got) == 1 and json.loads(hook.got[0][1])["institution"] == "ins-c"


def test_the_config_is_strict_and_checked_by_the_command(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[receiver.m]\nkind = "email"\nhost = "x"\nstarttls = false\nsender = "a@b"\nto = ["c@d"]\n'
                   '[[route]]\ninstitutions = ["*"]\nreceivers = ["nope"]\nmin_severity = 9\ncolour = "red"\n')
    assert finsa(["notify", "--check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "allow_plaintext" in err and "colour: unknown key" in err and "min_severity" in err
    good = tmp_path / "good.toml"
    good.write_text(f'[receiver.h]\nkind = "webhook"\nurl = "http://127.0.0.1:1/"\nsecret = "{SECRET}"\n'
                    '[[route]]\ninstitutions = ["*"]\nreceivers = ["h"]\n')
    assert finsa(["notify", "--check", str(good)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and '"min_severity": 3' in out
