"""The notifications config file: receivers and routes, strict (unknown keys refused, every problem listed).

    [outbox]
    path = "data/notify/outbox.sqlite"
    max_attempts = 20            # then the message is kept, marked failed, and counted
    retry_s = 5.0                # first retry delay, doubled each attempt up to max_retry_s
    max_retry_s = 300.0

    [receiver.bank-a-soc]
    kind = "webhook"
    url = "https://soc.bank-a.example/finsa"
    secret_file = "/etc/finsa/bank-a-webhook.key"   # HMAC-SHA256 key (or `secret`, tests only)

    [receiver.bank-a-mail]
    kind = "email"
    host = "smtp.bank-a.example"
    port = 587
    starttls = true              # required unless allow_plaintext = true
    ca_file = "/etc/finsa/smtp-ca.pem"
    sender = "finsa@regulator.example"
    to = ["soc@bank-a.example"]

    [receiver.bank-a-siem]
    kind = "syslog"
    host = "siem.bank-a.example"
    port = 6514
    transport = "tcp"            # or "udp"

    [[route]]
    institutions = ["bank-a"]    # or ["*"]
    kinds = ["warning", "emergency", "alert"]
    min_severity = 3             # 1 info .. 5 critical
    receivers = ["bank-a-soc", "bank-a-mail", "bank-a-siem"]

>>> cfg = parse_notify_config({"receiver": {"r": {"kind": "webhook", "url": "http://127.0.0.1:1/", "secret": "0123456789abcdef"}},
...                            "route": [{"institutions": ["*"], "receivers": ["r"]}]})
>>> cfg.route[0].min_severity, cfg.route[0].kinds
(3, ['warning', 'emergency'])
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from finsa.settings import Strict, load_config, parse_config

__all__ = ["NotifyConfig", "Webhook", "Email", "Syslog", "Route", "Outbox", "parse_notify_config",
           "load_notify_config"]

#: The server a receiver delivers to: a host name or address, and a port (what email and syslog check).
Host = Annotated[str, Field(min_length=1)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Outbox(Strict):
    path: Path = Field(Path("data/notify/outbox.sqlite"), description="the persistent queue (SQLite file)")
    max_attempts: int = Field(20, ge=1, le=1000)
    retry_s: float = Field(5.0, gt=0, le=3600)
    max_retry_s: float = Field(300.0, gt=0, le=86400)
    timeout_s: float = Field(10.0, gt=0, le=120, description="per delivery attempt")


class _Secret(Strict):
    secret: str | None = Field(None, min_length=16, description="inline key (tests); prefer secret_file")
    secret_file: Path | None = None

    def key(self) -> bytes:
        if self.secret_file is not None:
            return self.secret_file.read_text("utf-8").strip().encode()
        return (self.secret or "").encode()


class Webhook(_Secret):
    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://[^\s]+$")

    @model_validator(mode="after")
    def _has_key(self) -> "Webhook":
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("a webhook needs exactly one of secret, secret_file (its HMAC key)")
        return self


class Email(Strict):
    kind: Literal["email"]
    host: Host
    port: Port = 587
    starttls: bool = True
    allow_plaintext: bool = Field(False, description="allow a server without STARTTLS (lab only)")
    ca_file: Path | None = Field(None, description="CA for the server's certificate (default: the system's)")
    username: str = ""
    password_file: Path | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)

    @model_validator(mode="after")
    def _tls(self) -> "Email":
        if not self.starttls and not self.allow_plaintext:
            raise ValueError("starttls = false needs allow_plaintext = true (mail would travel in clear)")
        return self


class Syslog(Strict):
    kind: Literal["syslog"]
    host: Host
    port: Port = 514
    transport: Literal["udp", "tcp"] = "udp"
    app_name: str = Field("finsa", pattern=r"^[!-~]{1,48}$")


Receiver = Annotated[Union[Webhook, Email, Syslog], Field(discriminator="kind")]


class Route(Strict):
    institutions: list[str] = Field(min_length=1, description='institution ids, or ["*"] for all')
    kinds: list[Literal["warning", "emergency", "alert"]] = Field(["warning", "emergency"])  # pydantic copies it
    min_severity: int = Field(3, ge=1, le=5)
    receivers: list[str] = Field(min_length=1)


class NotifyConfig(Strict):
    outbox: Outbox = Field(default_factory=lambda: Outbox.model_validate({}))
    receiver: dict[str, Receiver] = Field(default_factory=dict)
    route: list[Route] = Field(default_factory=list)

    @model_validator(mode="after")
    def _routes_name_receivers(self) -> "NotifyConfig":
        missing = sorted({r for route in self.route for r in route.receivers} - set(self.receiver))
        if missing:
            raise ValueError(f"routes name unknown receiver(s): {', '.join(missing)}")
        return self


def parse_notify_config(data: dict, source: str = "<notify config>") -> NotifyConfig:
    return parse_config(data, NotifyConfig, source)


def load_notify_config(path: str | Path) -> NotifyConfig:
    return load_config(path, NotifyConfig)
