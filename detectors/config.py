"""Operator configuration of the detectors: one strict file, every problem listed at once.

The file has a ``[detectors.NAME]`` table per registered detector (``enabled`` and any keyword
argument of the detector's constructor, discovered with :mod:`inspect`, so a newly registered
detector is configurable without touching this module), per-subsector and per-institution
overrides (``[overrides.subsector.SUBSECTOR.NAME]``, ``[overrides.institution.ID.NAME]``; the
institution's wins), and an ``[[allowlist]]`` of accepted sources (:mod:`finsa.detectors.allowlist`).

Validation has two passes and reports both at once in one :class:`~finsa.errors.ConfigError`:
the schema (pydantic, strict types: unknown keys, unknown detectors, wrong types, bad CIDRs),
then every detector table and override is *built*, each explicitly set parameter on its own and
then together, so a value the detector refuses (``DetectorParamError``) is a problem with its
path, e.g. ``detectors.portscan.min_ports: 1 not in [2, 65536]``. With an institutions registry,
overrides are also built per institution and unknown institution ids are problems.
Hot reload is :class:`finsa.detectors.reload.ConfigWatcher`; the engine that runs a config is
:meth:`finsa.detectors.engine.DetectionEngine.from_config`.

>>> cfg = parse_detectors_config({"detectors": {"portscan": {"min_ports": 30}},
...     "overrides": {"subsector": {"payment": {"portscan": {"min_ports": 10}}}}})
>>> cfg.effective("portscan")[1]["min_ports"], cfg.effective("portscan", subsector="payment")[1]["min_ports"]
(30, 10)
>>> try:
...     parse_detectors_config({"detectors": {"portscan": {"min_ports": 1, "colour": "red"}}}, "d.toml")
... except ConfigError as err:
...     print(err)
d.toml: 2 problems
  detectors.portscan.colour: unknown key
  detectors.portscan.min_ports: 1 not in [2, 65536]
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pydantic import ConfigDict, Field, ValidationError, create_model

from finsa.detectors import registry as detector_registry
from finsa.detectors.allowlist import AllowEntry
from finsa.detectors.base import Detector
from finsa.errors import ConfigError
from finsa.institutions import SUBSECTORS, Registry
from finsa.settings import Strict, parse_config, read_document

__all__ = ["Config", "DetectorSettings", "Override", "detector_params", "parse_detectors_config",
           "load_detectors_config", "default_config", "params_key"]

#: Engine-level constructor arguments that a file may not set.
ENGINE_PARAMS = frozenset({"seed"})
INSTITUTION_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _StrictValues(Strict):
    """Section models: unknown keys refused and no coercion (``"20"`` is not an int)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- what a detector accepts ------------------------------------------------------------

def detector_params(cls: type[Detector]) -> dict[str, tuple[Any, Any]]:
    """Constructor parameter -> (annotation, default) over the class hierarchy, ``seed`` excluded."""
    out: dict[str, tuple[Any, Any]] = {}
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        try:
            hints = typing.get_type_hints(klass.__init__)
        except Exception:  # noqa: BLE001 - an unresolvable annotation accepts anything
            hints = {}
        for pname, p in inspect.signature(klass.__init__).parameters.items():
            if p.kind is p.KEYWORD_ONLY and pname not in out and pname not in ENGINE_PARAMS:
                default = ... if p.default is p.empty else p.default  # ...: the file must set it
                out[pname] = (hints.get(pname, Any), default)
    return out


def _file_type(annotation: Any) -> Any:
    """The type a file value must have: a ``tuple[X, ...]`` is written as a list."""
    if typing.get_origin(annotation) is tuple:
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return list[args[0]] if len(set(args)) == 1 else list[Any]
    return annotation


def _native(value: Any, default: Any) -> Any:
    """A file value as the constructor expects it (lists back to tuples)."""
    return tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value


def params_key(params: Mapping[str, Any]) -> tuple:
    """A hashable, order-free key of a parameter set."""
    def freeze(v: Any) -> Any:
        return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v
    return tuple(sorted((k, freeze(v)) for k, v in params.items()))


def _section_model(name: str, cls: type[Detector], override: bool) -> type[Strict]:
    enabled_default = None if override else name in _default_names()
    fields: dict[str, Any] = {"enabled": (bool | None if override else bool, enabled_default)}
    for pname, (annotation, default) in detector_params(cls).items():
        ftype = _file_type(annotation)
        default = list(default) if isinstance(default, tuple) else default
        fields[pname] = (ftype | None, None) if override else (ftype, default)
    kind = "Override" if override else "Section"
    return create_model(f"{cls.__name__}{kind}", __base__=_StrictValues, **fields)


def _default_names() -> tuple[str, ...]:
    return tuple(getattr(detector_registry, "DEFAULT_NAMES", detector_registry.names()))


def _models() -> tuple[type[Strict], dict[str, type[Strict]], dict[str, type[Strict]]]:
    """The document model and the per-detector section / override models, for today's registry."""
    detectors = dict(detector_registry.DETECTORS)
    sections = {n: _section_model(n, c, override=False) for n, c in detectors.items()}
    overrides = {n: _section_model(n, c, override=True) for n, c in detectors.items()}
    per_detector = create_model("DetectorOverrides", __base__=Strict,
                                **{n: (m | None, None) for n, m in overrides.items()})
    by_subsector = create_model("SubsectorOverrides", __base__=Strict,
                                **{s: (per_detector | None, None) for s in SUBSECTORS})
    institution_key = typing.Annotated[str, Field(pattern=INSTITUTION_ID)]
    overrides_model = create_model(
        "Overrides", __base__=Strict, subsector=(by_subsector, Field(default_factory=by_subsector)),
        institution=(dict[institution_key, per_detector], Field(default_factory=dict)))
    detectors_model = create_model("Detectors", __base__=Strict,
                                   **{n: (m, Field(default_factory=m)) for n, m in sections.items()})
    document = create_model(
        "DetectorsFile", __base__=Strict, detectors=(detectors_model, Field(default_factory=detectors_model)),
        overrides=(overrides_model, Field(default_factory=overrides_model)),
        allowlist=(list[AllowEntry], Field(default_factory=list)))
    return document, sections, overrides


# --- the validated configuration ---------------------------------------------------------

@dataclass(frozen=True)
class DetectorSettings:
    """One detector's table: enabled, every parameter's effective value, and which were set."""

    name: str
    enabled: bool
    params: dict[str, Any]
    explicit: frozenset[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class Override:
    """Parameters (and possibly ``enabled``) replaced for a subsector or an institution."""

    enabled: bool | None
    params: dict[str, Any]


@dataclass(frozen=True)
class Config:
    """A validated detectors file; compare two with ``==``."""

    detectors: dict[str, DetectorSettings]
    subsector: dict[str, dict[str, Override]] = field(default_factory=dict)
    institution: dict[str, dict[str, Override]] = field(default_factory=dict)
    allowlist: tuple[AllowEntry, ...] = ()
    source: str = field(default="<config>", compare=False)

    def names(self) -> list[str]:
        """Detector names, the default set first in its order, then the others sorted."""
        first = [n for n in _default_names() if n in self.detectors]
        return first + sorted(set(self.detectors) - set(first))

    def effective(self, name: str, institution_id: str | None = None,
                  subsector: str | None = None) -> tuple[bool, dict[str, Any]]:
        """(enabled, parameters) of a detector at an institution of a subsector."""
        base = self.detectors[name]
        enabled, params = base.enabled, dict(base.params)
        for layer in (self.subsector.get(subsector or ""), self.institution.get(institution_id or "")):
            override = (layer or {}).get(name)
            if override is not None:
                enabled = enabled if override.enabled is None else override.enabled
                params.update(override.params)
        return enabled, params


def default_config() -> Config:
    """Every registered detector with its defaults: what an empty file means."""
    return parse_detectors_config({}, "<defaults>")


def _to_config(document: Any, source: str) -> Config:
    classes = detector_registry.DETECTORS
    detectors = {}
    for name in classes:
        section = getattr(document.detectors, name)
        values = section.model_dump()
        defaults = {p: d for p, (_, d) in detector_params(classes[name]).items()}
        params = {p: _native(values[p], defaults[p]) for p in defaults}
        detectors[name] = DetectorSettings(name, values["enabled"], params,
                                           frozenset(section.model_fields_set) - {"enabled"})

    def overrides(per_detector: Any) -> dict[str, Override]:
        out = {}
        for name in classes:
            model = getattr(per_detector, name)
            if model is not None:
                values = model.model_dump(exclude_unset=True)
                enabled = values.pop("enabled", None)
                out[name] = Override(enabled, {p: _native(v, detectors[name].params[p]) for p, v in values.items()})
        return out

    subsector = {s: overrides(getattr(document.overrides.subsector, s)) for s in SUBSECTORS
                 if getattr(document.overrides.subsector, s) is not None}
    institution = {i: overrides(v) for i, v in document.overrides.institution.items()}
    return Config(detectors, subsector, institution, tuple(document.allowlist), source)


# --- second pass: build what the file describes --------------------------------------------

def _try_build(name: str, params: Mapping[str, Any]) -> str | None:
    try:
        detector_registry.create(name, **params)
    except (ValueError, TypeError) as exc:  # DetectorParamError is a ValueError
        return str(exc)
    return None


def _problem(prefix: str, name: str, message: str, param: str | None) -> str:
    named = re.match(rf"^{re.escape(name)}\.(\w+)\s*:?\s*(.*)$", message, re.S)
    if named:
        return f"{prefix}.{named[1]}: {named[2]}"
    return f"{prefix}.{param}: {message}" if param else f"{prefix}: {message}"


def _build_problems(name: str, base: Mapping[str, Any], explicit: Mapping[str, Any], prefix: str) -> list[str]:
    """All set parameters built together over ``base``; when that fails, each on its own names the
    field at fault (a combination only valid together, such as raising two bounds that limit each
    other, is accepted)."""
    err = _try_build(name, {**base, **explicit})
    if not err:
        return []
    problems = []
    if len(explicit) > 1:
        for pname, value in explicit.items():
            alone = _try_build(name, {**base, pname: value})
            if alone:
                problems.append(_problem(prefix, name, alone, pname))
    return problems or [_problem(prefix, name, err, next(iter(explicit)) if len(explicit) == 1 else None)]


def _table(data: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _schema_valid(name: str, model: type[Strict], raw: Any) -> dict[str, Any] | None:
    """The explicitly set values of a table that passes its schema, else None."""
    if not isinstance(raw, dict):
        return None
    try:
        values = model.model_validate(raw).model_dump(exclude_unset=True)
    except ValidationError as exc:  # build the good keys anyway: every problem is listed at once
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
        try:
            values = model.model_validate({k: v for k, v in raw.items() if k not in bad}).model_dump(
                exclude_unset=True)
        except ValidationError:
            return None
    values.pop("enabled", None)
    defaults = {p: d for p, (_, d) in detector_params(detector_registry.DETECTORS[name]).items()}
    return {p: _native(v, defaults.get(p)) for p, v in values.items()}


def _detector_problems(data: dict, sections: dict, overrides: dict) -> list[str]:
    problems: list[str] = []
    bases: dict[str, dict[str, Any]] = {}
    for name, model in sections.items():
        values = _schema_valid(name, model, _table(data, "detectors", name))
        if values is None:
            continue
        problems += _build_problems(name, {}, values, f"detectors.{name}")
        bases[name] = {p: v for p, v in values.items() if _try_build(name, {p: v}) is None}
    layers = [(f"overrides.subsector.{s}", _table(data, "overrides", "subsector", s)) for s in SUBSECTORS]
    layers += [(f"overrides.institution.{i}", _table(data, "overrides", "institution", i))
               for i in _table(data, "overrides", "institution")]
    for prefix, per_detector in layers:
        for name, raw in per_detector.items():
            if name in bases and name in overrides and isinstance(raw, dict):
                values = _schema_valid(name, overrides[name], raw)
                if values is not None:
                    problems += _build_problems(name, bases[name], values, f"{prefix}.{name}")
    return problems


def _registry_problems(cfg: Config, registry: Registry) -> list[str]:
    """Unknown institution ids, and overrides that only fail once subsector and institution stack."""
    known = registry.by_id
    problems = [f"overrides.institution.{i}: unknown institution (not in the registry)"
                for i in cfg.institution if i not in known]
    for index, entry in enumerate(cfg.allowlist):
        problems += [f"allowlist.{index}.institutions: unknown institution {i} (not in the registry)"
                     for i in entry.institutions or () if i not in known]
    for inst_id, per_detector in cfg.institution.items():
        subsector = known[inst_id].subsector if inst_id in known else None
        for name in per_detector:
            if name in cfg.subsector.get(subsector or "", {}):
                err = _try_build(name, cfg.effective(name, inst_id, subsector)[1])
                if err:
                    where, why = _problem(f"overrides.institution.{inst_id}.{name}", name, err, None).split(": ", 1)
                    problems.append(f"{where}: {why} (with the {subsector} subsector's override)")
    return problems


_MODELS: dict[tuple, tuple] = {}


def _cached_models() -> tuple[type[Strict], dict[str, type[Strict]], dict[str, type[Strict]]]:
    key = tuple(sorted(detector_registry.DETECTORS.items())) + (_default_names(),)
    if key not in _MODELS:
        _MODELS.clear()
        _MODELS[key] = _models()
    return _MODELS[key]


def parse_detectors_config(data: dict[str, Any], source: str = "<config>",
                           registry: Registry | None = None) -> Config:
    """Validate a parsed document; raise ConfigError listing every problem."""
    document_model, sections, overrides = _cached_models()
    problems: list[str] = []
    cfg = None
    try:
        cfg = _to_config(parse_config(data, document_model, source), source)
    except ConfigError as exc:
        problems += exc.problems
    problems += _detector_problems(data, sections, overrides)
    if cfg is not None and registry is not None:
        problems += _registry_problems(cfg, registry)
    if problems or cfg is None:
        raise ConfigError(source, sorted({p.replace(": Value error, ", ": ", 1) for p in problems}))
    return cfg


def load_detectors_config(path: str | Path, registry: Registry | None = None) -> Config:
    """Read and validate a detectors file (TOML, or YAML by its suffix)."""
    return parse_detectors_config(read_document(path), str(path), registry)
