"""``finsa detectors check FILE [--registry institutions.toml]``: validate a detectors file.

Valid: prints the effective configuration as TOML that validates again to the same config (every
detector with every parameter, ``# default`` marking what the file leaves unset; the overrides;
the allowlist; with ``--registry``, what differs per institution) and exits 0. Invalid: prints
every problem with its field path to stderr and exits 2.

>>> from finsa.detectors.config import parse_detectors_config
>>> text = render_effective(parse_detectors_config({"detectors": {"portscan": {"min_ports": 30}}}))
>>> "min_ports = 30\\n" in text, "min_hosts = 20  # default\\n" in text
(True, True)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from typing import Any

from finsa.detectors.config import Config, load_detectors_config
from finsa.detectors.registry import DETECTORS
from finsa.errors import ConfigError
from finsa.institutions import Registry, load_registry

__all__ = ["add_arguments", "main", "render_effective", "toml_value"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a detectors file and print the effective config",
                               description=__doc__.split("\n\n")[1] if __doc__ else None)
    check.add_argument("file", help="detectors file (TOML, or YAML by its suffix)")
    check.add_argument("--registry", metavar="FILE",
                       help="institutions file: maps institutions to subsectors and checks their ids")


def main(args: argparse.Namespace) -> int:
    if args.action == "check":
        return check(args.file, args.registry)
    raise SystemExit(f"finsa detectors: unknown action {args.action!r}")  # pragma: no cover - argparse refuses


def check(path: str, registry_path: str | None = None) -> int:
    """Validate ``path``: print the effective config (0) or every problem (2)."""
    try:
        registry = load_registry(registry_path) if registry_path else None
        cfg = load_detectors_config(path, registry)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    sys.stdout.write(render_effective(cfg, registry))
    return 0


def toml_value(value: Any) -> str:
    """A value as TOML text (bool, int, float, str, list/tuple, aware datetime)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")) if not math.isfinite(value) \
            else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"no TOML form for {value!r}")


def _summary(name: str) -> str:
    cls = DETECTORS.get(name)
    doc = (cls.__doc__ or "").strip().splitlines() if cls else []
    return f"{cls.technique}: {doc[0]}" if cls and doc else ""


def _override_lines(kind: str, layers: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for key, per_detector in layers.items():
        for name, override in per_detector.items():
            lines.append(f"[overrides.{kind}.{key}.{name}]")
            if override.enabled is not None:
                lines.append(f"enabled = {toml_value(override.enabled)}")
            lines += [f"{p} = {toml_value(v)}" for p, v in override.params.items()]
            lines.append("")
    return lines


def _per_institution(cfg: Config, registry: Registry) -> list[str]:
    lines = []
    for inst in registry.institution:
        for name in cfg.names():
            enabled, params = cfg.effective(name)
            on, mine = cfg.effective(name, inst.id, inst.subsector)
            if not on and enabled:
                lines.append(f"#   {inst.id} ({inst.subsector}) {name}: disabled")
            elif on and (mine != params or not enabled):
                parts = [] if enabled else ["enabled"]
                parts += [f"{p} = {toml_value(v)}" for p, v in mine.items() if params.get(p) != v]
                lines.append(f"#   {inst.id} ({inst.subsector}) {name}: {', '.join(parts)}")
    return ["# Per institution (from the registry), what differs from the [detectors] tables:"] + (
        lines or ["#   nothing: every institution runs the defaults"]) + [""]


def render_effective(cfg: Config, registry: Registry | None = None) -> str:
    """The effective configuration as TOML (see the module docstring)."""
    lines = [f"# Effective detector configuration of {cfg.source}",
             "# '# default' marks a value the file does not set.", ""]
    for name in cfg.names():
        settings = cfg.detectors[name]
        summary = _summary(name)
        lines.append(f"[detectors.{name}]" + (f"  # {summary}" if summary else ""))
        lines.append(f"enabled = {toml_value(settings.enabled)}")
        lines += [f"{p} = {toml_value(v)}" + ("" if p in settings.explicit else "  # default")
                  for p, v in settings.params.items()]
        lines.append("")
    lines += _override_lines("subsector", cfg.subsector) + _override_lines("institution", cfg.institution)
    for entry in cfg.allowlist:
        lines.append("[[allowlist]]")
        for key in ("entity", "detectors", "institutions", "reason", "expires"):
            value = getattr(entry, key)
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    if not cfg.allowlist:
        lines += ["# allowlist: empty", ""]
    if registry is not None:
        lines += _per_institution(cfg, registry)
    return "\n".join(lines)
