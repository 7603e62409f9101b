"""Strict configuration files: unknown keys are errors and every problem is listed at once.

Settings are pydantic models declared with ``extra="forbid"`` (see :class:`Strict`). A file
(TOML, or YAML when PyYAML is installed) is read, validated, and either returned as the model or
refused with a :class:`ConfigError` naming every bad field by its dotted path and the reason.
A running component that reloads its file (:class:`finsa.watch.FileWatcher`) keeps the old
settings when the new ones are refused.

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
