"""The files of a scenario folder, read in one place: its manifest and its ground truth.

:mod:`finsa.scenario.generator` writes a scenario folder; three roles read it (``finsa collect
--scenario`` in the collectors, ``finsa run``, ``finsa detect`` and ``finsa backtest`` in the app
layer). Collectors may import only the core, so the reader lives here, beside the wire records.

``manifest.json`` holds ``seed``, ``start_ms``, ``duration_s`` and ``captures``: one entry per
capture with ``path`` (relative to the folder), ``institution`` and ``sensor`` (optional: default
``<institution>-tap1``). A folder that cannot be read, a file that is not JSON, a missing key or
a capture entry without a path or institution raises :class:`ScenarioError` naming the file and
what is wrong.

>>> import json, tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / MANIFEST).write_text(json.dumps({"seed": 1, "start_ms": 0, "duration_s": 60,
...     "captures": [{"path": "bank-a.pcap", "institution": "bank-a"}]}))
>>> [(c.path.name, c.institution, c.sensor) for c in manifest_captures(folder)]
[('bank-a.pcap', 'bank-a', 'bank-a-tap1')]
>>> manifest_captures(folder, institution="nobody")
[]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from finsa.errors import FinsaError

__all__ = ["ScenarioError", "ManifestCapture", "MANIFEST", "GROUND_TRUTH", "read_scenario_json", "load_manifest",
           "load_ground_truth", "manifest_captures"]

MANIFEST, GROUND_TRUTH = "manifest.json", "ground_truth.json"


class ScenarioError(FinsaError):
    """A scenario could not be generated or read (bad arguments, missing or malformed files)."""


@dataclass(frozen=True)
class ManifestCapture:
    """One capture of a scenario: its file (absolute), institution and sensor."""

    path: Path
    institution: str
    sensor: str


def read_scenario_json(path: Path, required: tuple[str, ...]) -> dict:
    """A JSON object of a scenario folder holding every ``required`` key, or ScenarioError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: not valid JSON: {exc}") from None
    missing = [k for k in required if not isinstance(data, dict) or k not in data]
    if missing:
        raise ScenarioError(f"{path}: missing {', '.join(missing)}")
    return data


def load_manifest(scenario_dir: str | Path) -> dict:
    """The manifest of a scenario folder (capture paths stay relative to the folder)."""
    return read_scenario_json(Path(scenario_dir) / MANIFEST, ("seed", "start_ms", "duration_s", "captures"))


def load_ground_truth(scenario_dir: str | Path) -> dict:
    """The ground truth of a scenario folder."""
    return read_scenario_json(Path(scenario_dir) / GROUND_TRUTH, ("seed", "start_ms", "end_ms", "attacks"))


def manifest_captures(scenario_dir: str | Path, institution: str | None = None) -> list[ManifestCapture]:
    """The captures a scenario's manifest lists (of one institution when given), in its order."""
    folder = Path(scenario_dir)
    captures = load_manifest(folder)["captures"]
    if not isinstance(captures, list):
        raise ScenarioError(f"{folder / MANIFEST}: captures: not a list")
    out = []
    for index, entry in enumerate(captures):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) \
                or not isinstance(entry.get("institution"), str) or not entry["institution"]:
            raise ScenarioError(f"{folder / MANIFEST}: captures[{index}]: needs a path and an institution")
        if institution in (None, entry["institution"]):
            sensor = entry.get("sensor") or f"{entry['institution']}-tap1"
            out.append(ManifestCapture(folder / entry["path"], entry["institution"], str(sensor)))
    return out
