"""Strict configuration files: unknown keys are errors and every problem is listed at once.

Settings are pydantic models declared with ``extra="forbid"`` (see :class:`Strict`). A file
(TOML, or YAML when PyYAML is installed) is read, validated, and either returned as the model or
refused with a :class:`ConfigError` naming every bad field by its dotted path and the reason.
A running component that reloads its file keeps the old settings when the new ones are refused.

>>> from pydantic import Field
>>> class Demo(Strict):
...     port: int = Field(8080, ge=1, le=65535)
>>> try:
...     parse_config({"port": 0, "colour": "red"}, Demo, source="demo.toml")
... except ConfigError as err:
...     print(err)
demo.toml: 2 problems
  colour: unknown key
  port: Input should be greater than or equal to 1
"""

from __future__ import annotations

import hashlib
import threading
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from finsa.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every settings model: unknown keys are refused, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def read_document(path: str | Path) -> dict[str, Any]:
    """Parse a TOML (or YAML) file into a dict; a syntax error becomes a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml  # optional

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is a config error
        raise ConfigError(str(path), [f"not valid {path.suffix.lstrip('.') or 'toml'}: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["the document must be a table of settings"])
    return data


def parse_config(data: dict[str, Any], model: type[M], source: str = "<config>") -> M:
    """Validate ``data`` against ``model``; raise ConfigError listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top)"
            reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{where}: {reason}")
        raise ConfigError(source, sorted(problems)) from None


def load_config(path: str | Path, model: type[M]) -> M:
    """Read and validate a settings file."""
    return parse_config(read_document(path), model, source=str(path))


class FileWatcher:
    """Poll a settings file; on a change, validate it and hand the result on, or keep the old one.

    ``load(path)`` parses and validates (raising ConfigError); ``on_change(value)`` receives a valid
    new value. An invalid file is reported once through ``on_error(problems)`` and the running
    settings stay. Polling compares modification time and size, then the content.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = path.write_text("1")
    >>> seen = []
    >>> w = FileWatcher(path, lambda p: int(p.read_text()), seen.append)
    >>> _ = path.write_text("22"); w.poll(), seen
    (True, [22])
    >>> w.poll()
    False
    """

    def __init__(self, path: str | Path, load, on_change, on_error=None, interval_s: float = 2.0) -> None:  # noqa: ANN001
        self.path, self.load, self.on_change = Path(path), load, on_change
        self.on_error = on_error or (lambda problems: None)
        self.interval_s = interval_s
        self._seen = self._stamp()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stamp(self) -> tuple:
        try:
            st = self.path.stat()
            return st.st_mtime_ns, st.st_size, hashlib.blake2b(self.path.read_bytes(), digest_size=16).digest()
        except OSError:
            return ()

    def poll(self) -> bool:
        """Check once; True when a new valid value was handed on."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            value = self.load(self.path)
        except ConfigError as exc:
            self.on_error(exc.problems)
            return False
        self.on_change(value)
        return True

    def start(self) -> "FileWatcher":
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.poll()
        self._thread = threading.Thread(target=loop, daemon=True, name=f"watch-{self.path.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
