"""Delivery to one receiver: webhook (HMAC-signed JSON), e-mail (SMTP + STARTTLS), syslog (RFC 5424 + CEF).

Each sender takes a stored payload (the JSON of a notice, see :mod:`finsa.notify.messages`) and
raises :class:`DeliveryError` when the receiver did not take it; the notifier retries later.

Webhook requests carry ``X-Finsa-Id`` (the stable message id), ``X-Finsa-Timestamp`` and
``X-Finsa-Signature: sha256=<hex>``, the HMAC-SHA256 of ``timestamp + "." + body`` with the
receiver's key (:func:`signature`): the receiver checks it and may refuse old timestamps.

>>> signature(b"k" * 16, "1700000000", b'{"a": 1}')[:15]
'sha256=49b4b0da'
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from typing import Any, Callable

from finsa.errors import FinsaError

from finsa.notify.config import Email, Syslog, Webhook
from finsa.notify.messages import Notice, email_message, json_body, syslog_line

__all__ = ["DeliveryError", "deliver", "signature", "notice_of_payload"]


class DeliveryError(FinsaError):
    """The receiver did not take the message (retried later)."""


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def notice_of_payload(payload: bytes) -> Notice:
    data = json.loads(payload)
    return Notice(data["kind"], data["key"], int(data["severity"]), data.get("institution_id", ""), data["title"],
                  data["body"], int(data["time_ms"]), data.get("fields", {}))


def _webhook(r: Webhook, mid: str, notice: Notice, institution: str, timeout_s: float) -> None:
    body = json_body(notice, mid, institution)
    stamp = str(int(time.time()))
    request = urllib.request.Request(r.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Finsa-Id": mid, "X-Finsa-Timestamp": stamp,
        "X-Finsa-Signature": signature(r.key(), stamp, body), "User-Agent": "finsa-notify/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            if not 200 <= response.status < 300:
                raise DeliveryError(f"webhook answered {response.status}")
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"webhook unreachable: {exc}") from None


def _email(r: Email, mid: str, notice: Notice, institution: str, timeout_s: float) -> None:
    message = email_message(notice, mid, r.sender, r.to, institution)
    try:
        with smtplib.SMTP(r.host, r.port, timeout=timeout_s) as smtp:
            smtp.ehlo()
            if r.starttls:
                if not smtp.has_extn("starttls"):
                    raise DeliveryError("the SMTP server does not offer STARTTLS")
                context = ssl.create_default_context(cafile=str(r.ca_file) if r.ca_file else None)
                smtp.starttls(context=context)
                smtp.ehlo()
            if r.username and r.password_file is not None:
                smtp.login(r.username, r.password_file.read_text("utf-8").strip())
            smtp.send_message(message)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"SMTP: {exc}") from None


def _syslog(r: Syslog, mid: str, notice: Notice, institution: str, timeout_s: float) -> None:
    line = syslog_line(notice, mid, r.app_name, institution).encode("utf-8")
    try:
        if r.transport == "udp":
            with socket.socket(socket.AF_INET6 if ":" in r.host else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(line[:8192], (r.host, r.port))
            return
        with socket.create_connection((r.host, r.port), timeout=timeout_s) as s:
            s.sendall(str(len(line)).encode() + b" " + line)  # RFC 6587 octet counting
    except OSError as exc:
        raise DeliveryError(f"syslog: {exc}") from None


def deliver(receiver: Any, mid: str, payload: bytes, institution: str, timeout_s: float) -> None:
    """Send one stored message to ``receiver`` (a config receiver); DeliveryError when it failed."""
    notice = notice_of_payload(payload)
    senders: dict[str, Callable[[Any, str, Notice, str, float], None]] = {
        "webhook": _webhook, "email": _email, "syslog": _syslog}
    sender = senders[receiver.kind]
    sender(receiver, mid, notice, institution, timeout_s)
