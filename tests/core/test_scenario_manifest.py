"""finsa.scenario_manifest: the one reader of a scenario folder refuses what it cannot use, naming it."""

from __future__ import annotations

import doctest
import json

import pytest

import finsa.scenario_manifest as sm
from finsa.scenario_manifest import ScenarioError, load_ground_truth, load_manifest, manifest_captures

GOOD = {"seed": 1, "start_ms": 5, "duration_s": 60,
        "captures": [{"path": "captures/bank-a.pcap", "institution": "bank-a", "sensor": "a-tap"},
                     {"path": "captures/ins-c.pcap", "institution": "ins-c"}]}


def _folder(tmp_path, manifest) -> object:
    (tmp_path / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    return tmp_path


def test_captures_in_order_with_absolute_paths_and_default_sensor(tmp_path) -> None:
    folder = _folder(tmp_path, GOOD)
    got = manifest_captures(folder)
    assert [(c.path, c.institution, c.sensor) for c in got] == [
        (tmp_path / "captures/bank-a.pcap", "bank-a", "a-tap"), (tmp_path / "captures/ins-c.pcap", "ins-c", "ins-c-tap1")]
    assert [c.institution for c in manifest_captures(folder, "ins-c")] == ["ins-c"]
    assert load_manifest(folder)["start_ms"] == 5


@pytest.mark.parametrize("manifest, says", [
    ("{", "not valid JSON"),
    ("[]", "missing seed"),
    ({**GOOD, "captures": {"path": "x"}}, "captures: not a list"),
    ({**GOOD, "captures": [{"path": "x.pcap"}]}, "captures[0]: needs a path and an institution"),
    ({**GOOD, "captures": [{"institution": "bank-a", "path": 7}]}, "captures[0]"),
    ({k: v for k, v in GOOD.items() if k != "start_ms"}, "missing start_ms"),
])
def test_bad_manifests_are_refused_with_the_reason(tmp_path, manifest, says) -> None:
    with pytest.raises(ScenarioError, match=says.replace("[", r"\[").replace("]", r"\]")):
        manifest_captures(_folder(tmp_path, manifest))


def test_missing_files_are_refused(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_manifest(tmp_path)
    (tmp_path / "ground_truth.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_ground_truth(tmp_path)


def test_the_generator_and_the_collector_use_this_reader(tmp_path) -> None:
    from finsa.collectors.collect_command import scenario_sources
    from finsa.scenario import generator

    assert generator.load_manifest is load_manifest and generator.ScenarioError is ScenarioError
    sources, start_ms = scenario_sources(_folder(tmp_path, GOOD))
    assert start_ms == 5 and [s.sensor_id for s in sources] == ["a-tap", "ins-c-tap1"]
    with pytest.raises(ScenarioError, match="captures"):
        scenario_sources(_folder(tmp_path, {**GOOD, "captures": [{}]}))


def test_doctests() -> None:
    result = doctest.testmod(sm, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
