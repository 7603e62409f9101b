"""Incident grades and reporting deadlines: a configurable severity scheme.

An **incident** in the report is what one attack source did at one institution in the period
(its alerts grouped by institution and entity). The scheme lists grades from the most serious
down; an incident takes the first grade whose minimums it meets (highest alert severity,
institution criticality, number of alerts) and must be reported to the regulator within the
grade's ``deadline_hours`` of its first alert. The default has four grades, loosely after the
DORA major-incident timeline (initial notification within hours, minor incidents in a monthly
summary). A TOML file replaces it::

    [[grades]]
    name = "major"
    min_severity = 5
    min_criticality = 4
    deadline_hours = 4

>>> scheme = default_scheme()
>>> [g.name for g in scheme], scheme.grade(severity=5, criticality=5, alerts=3).deadline_hours
(['major', 'significant', 'moderate', 'minor'], 4.0)
>>> scheme.grade(severity=4, criticality=2, alerts=1).name
'significant'
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from finsa.errors import ConfigError

__all__ = ["Grade", "Scheme", "default_scheme", "load_scheme", "DEFAULT_SCHEME_TOML"]

DEFAULT_SCHEME_TOML = """
[[grades]]
name = "major"
description = "Critical activity at a highly critical institution: initial notification"
min_severity = 5
min_criticality = 4
deadline_hours = 4

[[grades]]
name = "significant"
description = "High or critical activity: notify within a day"
min_severity = 4
deadline_hours = 24

[[grades]]
name = "moderate"
description = "Medium severity: intermediate report"
min_severity = 3
deadline_hours = 72

[[grades]]
name = "minor"
description = "Low or informational: monthly summary"
min_severity = 1
deadline_hours = 720
"""
_KEYS = {"name", "description", "min_severity", "min_criticality", "min_alerts", "deadline_hours"}


@dataclass(frozen=True)
class Grade:
    name: str
    deadline_hours: float
    min_severity: int = 1
    min_criticality: int = 1
    min_alerts: int = 1
    description: str = ""

    def matches(self, severity: int, criticality: int, alerts: int) -> bool:
        return (severity >= self.min_severity and criticality >= self.min_criticality
                and alerts >= self.min_alerts)


@dataclass(frozen=True)
class Scheme:
    """Grades, most serious first; the last one should catch everything."""

    grades: tuple[Grade, ...]

    def __iter__(self) -> Iterator[Grade]:
        return iter(self.grades)

    def grade(self, severity: int, criticality: int, alerts: int) -> Grade:
        for g in self.grades:
            if g.matches(severity, criticality, alerts):
                return g
        return self.grades[-1]


def _parse(data: dict[str, Any], source: str) -> Scheme:
    problems: list[str] = []
    items = data.get("grades")
    if set(data) - {"grades"}:
        problems.append(f"unknown key(s): {', '.join(sorted(set(data) - {'grades'}))}")
    if not isinstance(items, list) or not items:
        raise ConfigError(source, problems + ["needs at least one [[grades]] table"])
    grades = []
    for n, item in enumerate(items, start=1):
        unknown = set(item) - _KEYS
        if unknown:
            problems.append(f"grade {n}: unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(item.get("name"), str) or not item.get("name"):
            problems.append(f"grade {n}: needs a name")
        hours = item.get("deadline_hours")
        if not isinstance(hours, (int, float)) or hours <= 0:
            problems.append(f"grade {n}: deadline_hours must be a positive number")
        for key in ("min_severity", "min_criticality", "min_alerts"):
            if key in item and (not isinstance(item[key], int) or item[key] < 0):
                problems.append(f"grade {n}: {key} must be a non-negative integer")
        if not problems:
            grades.append(Grade(item["name"], float(hours), item.get("min_severity", 1),
                                item.get("min_criticality", 1), item.get("min_alerts", 1),
                                item.get("description", "")))
    if problems:
        raise ConfigError(source, problems)
    return Scheme(tuple(grades))


def default_scheme() -> Scheme:
    return _parse(tomllib.loads(DEFAULT_SCHEME_TOML), "default scheme")


def load_scheme(path: str | Path) -> Scheme:
    """The scheme in a TOML file; every problem listed at once in a ConfigError."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), [str(exc)]) from None
    return _parse(data, str(path))
