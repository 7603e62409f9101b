"""The strict configuration of ``finsa worker`` (``finsa worker --check``), like the agent's.

The command line is read into :class:`WorkerConfig` (pydantic, unknown keys refused, values
validated) and every file it names is read and validated too: the institutions registry, the
inventory (against the registry), the detectors file (against the registry), the batch-signing
keys, the password files. Every problem is listed at once with its field and reason; ``--check``
prints the effective config (secrets masked) when there is none.

>>> problems, view = check_values({"broker": "kafka1:9092", "data_dir": "/tmp/x", "web_port": 70000,
...                                "drain_timeout": -1, "colour": "red"})
>>> problems
['colour: unknown key', 'drain_timeout: Input should be greater than or equal to 0', 'web_port: Input should be less than or equal to 65535']
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Callable

from pydantic import Field, field_validator

from finsa.errors import ConfigError
from finsa.settings import Strict, parse_config

__all__ = ["WorkerConfig", "check_values", "check_worker_args"]

_HOST_PORT = re.compile(r"^[^\s,:]+:\d{1,5}$")


class WorkerConfig(Strict):
    """Every setting of a stream worker (the command-line flags, ``-`` written ``_``)."""

    broker: str
    data_dir: Path | None = None
    clickhouse_url: str | None = None
    clickhouse_password_file: Path | None = None
    app_id: str = Field("finsa-worker", min_length=1)
    partitions: int = Field(4, ge=1, le=1024)
    session_timeout: float = Field(10.0, gt=0, le=300)
    state_dir: Path = Path("/tmp/finsa-worker")
    web_port: int = Field(0, ge=0, le=65535)
    web_host: str = "127.0.0.1"
    sasl_username: str | None = None
    sasl_password_file: Path | None = None
    sasl_mechanism: str = "SCRAM-SHA-512"
    ssl_ca_file: Path | None = None
    registry: Path | None = None
    inventory: Path | None = None
    detectors: Path | None = None
    batch_keys: Path | None = None
    notify: Path | None = None
    clickhouse_http: int = Field(0, ge=0, le=65535)
    drain_timeout: float = Field(20.0, ge=0, le=3600)
    stall_after: float = Field(10.0, gt=0, le=3600)
    group_max: int = Field(512, ge=1, le=100_000)
    flow_write_rows: int = Field(200_000, ge=1, le=10_000_000)
    flow_write_within: float = Field(0.0, ge=0, le=3600)
    check: bool = False

    @field_validator("broker")
    @classmethod
    def _servers(cls, value: str) -> str:
        bad = [s for s in value.split(",") if not _HOST_PORT.match(s.strip())]
        if bad:
            raise ValueError(f"expected host:port[,host:port], got {', '.join(map(repr, bad))}")
        return value


class _Problems(list):
    """Problems found so far, with the two checks every named file goes through."""

    def readable(self, field: str, path: Path | None, directory: bool = False) -> Path | None:
        """``path`` when it is set and readable, else None (a problem noted when it is set)."""
        if path is None:
            return None
        if not (path.is_dir() if directory else path.is_file()):
            self.append(f"{field}: {path}: not a readable {'directory' if directory else 'file'}")
            return None
        return path

    def validated(self, field: str, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except ConfigError as exc:
            self.extend(f"{field}: {p}" for p in exc.problems)
        except (OSError, ValueError) as exc:
            self.append(f"{field}: {exc}")
        return None


def _file_problems(cfg: WorkerConfig) -> list[str]:
    """Problems of the files the config names (each read and validated as the worker would)."""
    problems = _Problems()
    for field in ("clickhouse_password_file", "sasl_password_file", "ssl_ca_file"):
        problems.readable(field, getattr(cfg, field))
    if (cfg.data_dir is None) == (cfg.clickhouse_url is None):
        problems.append("data_dir: give exactly one of data_dir and clickhouse_url")
    if cfg.sasl_username and cfg.sasl_password_file is None:
        problems.append("sasl_password_file: needed with sasl_username")
    if cfg.inventory is not None and cfg.registry is None:
        problems.append("inventory: needs registry (assets are checked against the institutions)")
    registry = None
    registry_path = problems.readable("registry", cfg.registry)
    if registry_path is not None:
        from finsa.institutions import load_registry

        registry = problems.validated("registry", lambda: load_registry(registry_path))
    inventory_path = problems.readable("inventory", cfg.inventory) if registry is not None else None
    if registry_path is not None and inventory_path is not None:
        from finsa.sector.picture import SectorPicture

        problems.validated("inventory", lambda: SectorPicture.from_files(registry_path, inventory_path))
    detectors_path = problems.readable("detectors", cfg.detectors)
    if detectors_path is not None:
        from finsa.detectors.config import load_detectors_config

        problems.validated("detectors", lambda: load_detectors_config(detectors_path, registry))
    if cfg.notify is not None and cfg.registry is None:
        problems.append("notify: needs registry (warnings come from the sector picture)")
    notify_path = problems.readable("notify", cfg.notify)
    if notify_path is not None:
        from finsa.notify.config import load_notify_config

        problems.validated("notify", lambda: load_notify_config(notify_path))
    if cfg.clickhouse_http and cfg.data_dir is None:
        problems.append("clickhouse_http: needs data_dir (it serves the embedded store)")
    keys_dir = problems.readable("batch_keys", cfg.batch_keys, directory=True)
    if keys_dir is not None:
        from finsa.batchauth import load_keys

        if problems.validated("batch_keys", lambda: load_keys(keys_dir)) == {}:
            problems.append(f"batch_keys: {cfg.batch_keys}: no <institution>.key file")
    return list(problems)


def _masked(cfg: WorkerConfig) -> dict[str, Any]:
    view = cfg.model_dump(mode="json", exclude={"check"})
    if cfg.clickhouse_url and "@" in cfg.clickhouse_url:
        scheme, _, rest = cfg.clickhouse_url.partition("://")
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        view["clickhouse_url"] = f"{scheme}://{user}:**********@{host}" if ":" in credentials else cfg.clickhouse_url
    return view


def check_values(values: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """(every problem as ``field: reason``, the effective config with secrets masked)."""
    try:
        cfg = parse_config(values, WorkerConfig, source="finsa worker")
    except ConfigError as exc:
        return list(exc.problems), {}
    return _file_problems(cfg), _masked(cfg)


def check_worker_args(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """:func:`check_values` of a parsed ``finsa worker`` command line."""
    return check_values(dict(vars(args)))
