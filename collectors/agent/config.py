"""The collector agent's configuration: one strict TOML file.

Unknown keys are refused and every problem is listed with its dotted path (see
:mod:`finsa.settings`). Secrets (the SASL password) are read from a file or an environment
variable, held as ``SecretStr`` and masked wherever the config is shown. The pseudonymisation key
file is checked (readable, 64 hex digits) but its content is not kept here. Paths may use
``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``) or any other environment variable.

    institution_id = "bank-a"
    sensor_id = "bank-a-dc1"
    internal_networks = ["10.0.0.0/8", "2001:db8:a::/48"]
    pseudonymisation_key_file = "$CREDENTIALS_DIRECTORY/pseudonym.key"

    [sources]
    pcap_files = ["/var/lib/finsa/captures/today.pcap"]
    zeek_logs = ["/opt/zeek/logs/current"]        # conn/dns/ssl/http/ssh/notice logs, TSV or JSON
    suricata_eve = ["/var/log/suricata/eve.json"]
    # logs_state_directory = "/var/lib/finsa/state"  # read positions of the logs (default: the spool directory)

    [broker]
    bootstrap = "kafka.sector.example:9093"
    security_protocol = "SASL_SSL"
    sasl_mechanism = "SCRAM-SHA-512"
    sasl_username = "bank-a-agent"
    sasl_password_file = "$CREDENTIALS_DIRECTORY/broker.password"
    ssl_ca_file = "/etc/finsa/sector-ca.pem"

    [spool]
    directory = "/var/lib/finsa/spool"
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal, overload

from pydantic import Field, SecretStr, field_validator, model_validator

from finsa.collectors.agent.pseudonym import load_key
from finsa.errors import ConfigError
from finsa.institutions import agent_origin
from finsa.settings import Strict, load_config

__all__ = ["AgentConfig", "BrokerSettings", "SourceSettings", "SpoolSettings", "load_agent_config",
           "masked_view"]

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


@overload
def _expand(path: Path) -> Path: ...
@overload
def _expand(path: None) -> None: ...
@overload
def _expand(path: Path | None) -> Path | None: ...
def _expand(path: Path | None) -> Path | None:
    return None if path is None else Path(os.path.expandvars(str(path)))


def _host_port(text: str, lowest_port: int = 1) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not lowest_port <= int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    return text


class SourceSettings(Strict):
    """Where the agent's traffic comes from."""

    pcap_files: list[Path] = Field(default_factory=list, description="capture files to meter, in order")
    interfaces: list[str] = Field(default_factory=list, description="network interfaces to capture live (needs CAP_NET_RAW)")
    export_listen: list[str] = Field(default_factory=list, description="host:port to receive NetFlow/IPFIX on")
    zeek_logs: list[Path] = Field(default_factory=list, description="Zeek log files, or directories whose conn/dns/ssl/http/ssh/notice logs are followed")
    suricata_eve: list[Path] = Field(default_factory=list, description="Suricata eve.json files to follow")
    logs_from_start: bool = Field(False, description="read followed logs from their start (else from their end, like tail -F)")
    logs_follow: bool = Field(True, description="keep following logs; false: read them once to their end")
    logs_state_directory: Path | None = Field(
        None, description="where the read positions of followed logs are kept across restarts "
                          "(log-positions-zeek.json, log-positions-suricata.json); default: the spool directory")
    speed: float = Field(0.0, ge=0.0, description="replay speed of pcap files; 0 = as fast as possible")
    rebase_time: bool = Field(False, description="shift flow times so a capture starts now")

    @field_validator("export_listen")
    @classmethod
    def _listen(cls, values: list[str]) -> list[str]:
        return [_host_port(v) for v in values]

    @field_validator("pcap_files")
    @classmethod
    def _files(cls, values: list[Path]) -> list[Path]:
        out = [_expand(v) for v in values]
        missing = [str(p) for p in out if not p.is_file()]
        if missing:
            raise ValueError(f"no such capture file: {', '.join(missing)}")
        return out

    @field_validator("logs_state_directory")
    @classmethod
    def _state_dir(cls, path: Path | None) -> Path | None:
        path = _expand(path)
        if path is not None and not (path.is_dir() or path.parent.is_dir()):
            raise ValueError(f"neither the directory nor its parent exists: {path}")
        return path

    @field_validator("zeek_logs", "suricata_eve")
    @classmethod
    def _logs(cls, values: list[Path]) -> list[Path]:
        out = [_expand(v) for v in values]
        missing = [str(p) for p in out if not (p.exists() or p.parent.is_dir())]
        if missing:
            raise ValueError(f"neither the path nor its directory exists: {', '.join(missing)}")
        return out

    @model_validator(mode="after")
    def _some(self) -> "SourceSettings":
        if not (self.pcap_files or self.interfaces or self.export_listen or self.zeek_logs or self.suricata_eve):
            raise ValueError("give at least one of pcap_files, interfaces, export_listen, zeek_logs, suricata_eve")
        return self


class BrokerSettings(Strict):
    """The sector centre's Kafka broker and how the agent authenticates to it."""

    bootstrap: str = Field(description="host:port[,host:port]")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_file: Path | None = None
    sasl_password_env: str | None = None
    sasl_password: SecretStr | None = Field(None, description="filled from the file or the variable; never written in the file")
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    message_timeout_ms: int = Field(30_000, ge=1_000, le=600_000, description="how long a send is retried before it is redone from the spool")
    partitions: int = Field(4, ge=1, le=1024, description="partitions of the flow topic when the agent creates it")

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap(cls, text: str) -> str:
        return ",".join(_host_port(part.strip()) for part in text.split(","))

    @field_validator("sasl_password", mode="plain")
    @classmethod
    def _no_inline_password(cls, value: Any) -> Any:
        raise ValueError("may not be written in the file: use sasl_password_file or sasl_password_env")

    @field_validator("sasl_password_file", "ssl_ca_file", "ssl_cert_file", "ssl_key_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        path = _expand(path)
        if path is not None and not os.access(path, os.R_OK):
            raise ValueError(f"cannot read {path}")
        return path

    @model_validator(mode="after")
    def _resolve(self) -> "BrokerSettings":
        problems = []
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not (self.sasl_mechanism and self.sasl_username):
            problems.append("SASL needs sasl_mechanism and sasl_username")
        if sasl and not (self.sasl_password_file or self.sasl_password_env):
            problems.append("SASL needs sasl_password_file or sasl_password_env")
        if self.sasl_password_env and self.sasl_password_env not in os.environ:
            problems.append(f"sasl_password_env: variable {self.sasl_password_env} is not set")
        if bool(self.ssl_cert_file) != bool(self.ssl_key_file):
            problems.append("ssl_cert_file and ssl_key_file go together")
        if problems:
            raise ValueError("; ".join(problems))
        secret = self._read_password()
        if secret is not None:
            object.__setattr__(self, "sasl_password", SecretStr(secret))
        return self

    def _read_password(self) -> str | None:
        if self.sasl_password_file:
            return _expand(self.sasl_password_file).read_text(encoding="utf-8").strip()
        if self.sasl_password_env:
            return os.environ[self.sasl_password_env]
        return None

    def client_settings(self) -> dict[str, object]:
        """librdkafka settings for security (the only place the password is revealed)."""
        out: dict[str, object] = {"security.protocol": self.security_protocol.lower()}
        if self.sasl_mechanism:
            out["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            out["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            out["sasl.password"] = self.sasl_password.get_secret_value()
        for name, key in (("ssl_ca_file", "ssl.ca.location"), ("ssl_cert_file", "ssl.certificate.location"),
                          ("ssl_key_file", "ssl.key.location")):
            if getattr(self, name) is not None:
                out[key] = str(_expand(getattr(self, name)))
        return out


class SpoolSettings(Strict):
    """Where batches wait while the broker is away. When full, new batches are refused (counted)."""

    directory: Path
    max_bytes: int = Field(1 << 30, ge=1 << 16, description="bytes the spool may hold")
    max_batches: int = Field(100_000, ge=1, description="batches the spool may hold")
    segment_bytes: int = Field(4 << 20, ge=1 << 12, description="size at which a segment file is closed and fsynced")

    @field_validator("directory")
    @classmethod
    def _dir(cls, path: Path) -> Path:
        return _expand(path)


class PacketRingSettings(Strict):
    """Recent packets kept on the agent host for the institution's analyst (never sent to the centre)."""

    max_bytes: int = Field(256 << 20, ge=1 << 20, le=64 << 30, description="bytes of packets kept per agent")
    max_age_s: float = Field(600.0, gt=0, le=86400.0, description="packets older than this are dropped")
    listen: str = Field("127.0.0.1:9465", description="loopback host:port of GET /pcap")
    token_file: Path = Field(description="the bearer token the analyst's requests carry (a secret file)")
    web_origin: str | None = Field(None, description="the web view's origin (https://finsa.centre.example): its "
                                                     "pages in the analyst's browser may call this endpoint (CORS)")

    @field_validator("web_origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        return None if value is None else agent_origin(value)

    @field_validator("listen")
    @classmethod
    def _loopback(cls, text: str) -> str:
        text = _host_port(text, lowest_port=0)
        if not ipaddress.ip_address(text.rpartition(":")[0].strip("[]")).is_loopback:
            raise ValueError("the pcap endpoint listens on a loopback address only")
        return text


class AgentConfig(Strict):
    """Everything one collector agent needs."""

    institution_id: str = Field(pattern=_ID_PATTERN)
    sensor_id: str = Field(pattern=_ID_PATTERN)
    profile: Literal["agent", "nfstream", "zeek"] = "agent"
    sources: SourceSettings
    broker: BrokerSettings
    internal_networks: list[str] = Field(default_factory=list, description="addresses inside these are pseudonymised (host bits only: a pseudonym stays in its network, the longest matching one)")
    pseudonymisation_key_file: Path | None = None
    batch_signing_key_file: Path | None = Field(
        None, description="the institution's batch-signing key (64 hex characters); workers that verify "
                          "signatures dead-letter unsigned batches")
    spool: SpoolSettings
    metrics_listen: str | None = Field("127.0.0.1:9464", description="host:port of the Prometheus endpoint (port 0: any free one); empty = off")
    heartbeat_interval_s: float = Field(30.0, ge=0.1, le=3600.0)
    max_batch_rows: int = Field(10_000, ge=1, le=1_000_000)
    compress_batches: bool = Field(True, description="zlib-compress each batch (the wire format's flag, read by every "
                                   "worker): ~4-7x smaller on the bus and in the spool, for ~0.2-0.6 ms of CPU per "
                                   "1,000 flows here")
    packet_ring: PacketRingSettings | None = Field(None, description="keep recent packets for pcap cuts (live interfaces)")

    @field_validator("internal_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        bad = []
        for text in values:
            try:
                net = ipaddress.ip_network(text, strict=True)
            except ValueError as exc:
                bad.append(str(exc))
                continue
            if net.prefixlen == net.max_prefixlen:
                bad.append(f"{text} is one address: a pseudonym keeps the network and changes only host bits, "
                           "so it would be sent in clear; list the network it belongs to")
        if bad:
            raise ValueError("; ".join(bad))
        return values

    @field_validator("metrics_listen")
    @classmethod
    def _metrics(cls, text: str | None) -> str | None:
        return _host_port(text, lowest_port=0) if text else None

    @field_validator("pseudonymisation_key_file", "batch_signing_key_file")
    @classmethod
    def _key(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            load_key(path)
        except ConfigError as exc:
            raise ValueError("; ".join(exc.problems)) from None
        return _expand(path)

    @model_validator(mode="after")
    def _key_needed(self) -> "AgentConfig":
        if self.internal_networks and self.pseudonymisation_key_file is None:
            raise ValueError("internal_networks are pseudonymised: give pseudonymisation_key_file")
        return self


def load_agent_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent config file; ConfigError lists every problem."""
    return load_config(path, AgentConfig)


def masked_view(config: AgentConfig) -> dict[str, Any]:
    """The effective config as plain data, secrets masked (for ``--check`` and logs)."""
    data = config.model_dump(mode="json", exclude={"broker": {"sasl_password"}})
    data["broker"]["sasl_password"] = None if config.broker.sasl_password is None else "**********"
    return data
