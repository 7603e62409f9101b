"""Issue 16's "done when" for notifications, on the worker's own parts: an early warning the sector
stage raises reaches a local webhook receiver and a local SMTP server (STARTTLS) configured for
the warned institution, once each, also across a worker restart (checkpoint kept or lost)."""

from __future__ import annotations

import json
import time

import pytest
from aiosmtpd.controller import Controller

from finsa import wire
from finsa.app.soc_wiring import start_notifier
from finsa.sector.picture import SectorPicture
from finsa.streams.sector_stage import SectorStage
from tests.notify.receivers import Mailbox, Webhook, free_port, tls_context
from tests.streams.test_sector_stage import REGISTRY, scan_alerts

pytestmark = pytest.mark.integration


def _wait(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_an_early_warning_reaches_the_warned_institution_once_across_restarts(tmp_path):
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port(), tls_context=tls_context(tmp_path),
                      require_starttls=True)
    smtp.start()
    hook = Webhook(free_port()).start()
    config = tmp_path / "notify.toml"
    config.write_text(f"""
[outbox]
path = "notify/outbox.sqlite"
[receiver.pay3-hook]
kind = "webhook"
url = "http://127.0.0.1:{hook.port}/hook"
secret = "a-secret-of-pay-3-soc"
[receiver.pay3-mail]
kind = "email"
host = "127.0.0.1"
port = {smtp.port}
ca_file = "{tmp_path / 'cert.pem'}"
sender = "finsa@regulator.test"
to = ["soc@pay-3.test"]
[[route]]
institutions = ["pay-3"]
kinds = ["warning"]
min_severity = 1
receivers = ["pay3-hook", "pay3-mail"]
""")
    try:
        stage = SectorStage(SectorPicture(REGISTRY))
        notifier = start_notifier(config, stage, tmp_path)
        stage.observe_alerts(wire.encode_batch(scan_alerts(["pay-1", "pay-2"])))
        warned = stage.tick()["warning"].rows()
        assert {w["scope_id"] for w in warned if w["scope_kind"] == "institution"} == {"pay-3"}
        assert _wait(lambda: hook.got and mailbox.messages)
        checkpoint = stage.checkpoint()
        notifier.stop()  # graceful worker stop
        for restored in (True, False):  # restart from the checkpoint, and from nothing (a lost checkpoint)
            again = SectorStage(SectorPicture(REGISTRY))
            if restored:
                again.restore(checkpoint)
            notifier = start_notifier(config, again, tmp_path)
            again.observe_alerts(wire.encode_batch(scan_alerts(["pay-1", "pay-2"])))
            again.tick()
            notifier.deliver_due()
            notifier.stop()
    finally:
        hook.stop()
        smtp.stop()
    institution_hooks = [json.loads(body) for _, body in hook.got]
    assert [h["institution"] for h in institution_hooks] == ["pay-3"], institution_hooks
    assert len(mailbox.messages) == 1 and mailbox.messages[0][0]  # once, over STARTTLS
    assert "pay-3" in mailbox.messages[0][2]


def test_the_clickhouse_http_flag_serves_each_tenant_read_only(tmp_path):
    import base64
    import urllib.error
    import urllib.request

    from finsa.app.soc_wiring import start_clickhouse_http
    from finsa.storage.backend import open_store

    store = open_store(data_dir=tmp_path / "store")
    store.migrate()
    store.load_institutions(REGISTRY)
    lines = []
    endpoint = start_clickhouse_http(free_port(), store, tmp_path, out=lambda *a, **k: lines.append(a[0]))
    try:
        password = (tmp_path / "keys" / "clickhouse-http" / "finsa_pay-1.password").read_text().strip()
        token = base64.b64encode(f"finsa_pay-1:{password}".encode()).decode()

        def ask(sql: bytes) -> tuple[int, bytes]:
            request = urllib.request.Request(endpoint.url + "/?default_format=TSV", data=sql,
                                             headers={"Authorization": "Basic " + token})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read()

        assert ask(b"SELECT count() FROM alerts") == (200, b"0\n")
        status, body = ask(b"INSERT INTO alerts (alert_id) VALUES ('x')")
        assert status == 500 and b"READONLY" in body
    finally:
        endpoint.stop()
        store.close()
    assert "finsa_pay-1" in lines[0] and password not in lines[0]
    assert start_clickhouse_http(0, None, tmp_path) is None
