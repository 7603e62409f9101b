"""finsa.app.offline and finsa detect: metering several captures and detecting like the live pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from finsa.scenario.generator import generate_scenario
from finsa.app.offline import (CaptureSource, OfflineError, flow_batches, make_engine, meter_sources,
                                   run_offline, scenario_sources)
from finsa.errors import FinsaError
from finsa.wire import FLOW


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("small")
    generate_scenario(folder, duration_s=60, attack_set="basic")
    return folder


def test_batches_respect_flow_time_and_size() -> None:
    ends = np.sort(np.random.default_rng(1).integers(0, 10_000, size=500))
    flows = FLOW.make_batch({"last_seen_ms": ends})
    batches = list(flow_batches(flows, max_flows=20, batch_ms=1000))
    assert sum(len(b) for b in batches) == 500
    assert all(len(b) <= 20 for b in batches)
    for b in batches:
        t = b.columns["last_seen_ms"]
        assert t[0] // 1000 == t[-1] // 1000
    assert np.array_equal(np.concatenate([b.columns["last_seen_ms"] for b in batches]), ends)
    assert list(flow_batches(FLOW.make_batch({}))) == []
    with pytest.raises(ValueError):
        list(flow_batches(flows, max_flows=0))


def test_captures_are_merged_in_flow_end_order(small) -> None:
    sources = scenario_sources(small)
    flows = meter_sources(sources)
    ends = flows.columns["last_seen_ms"]
    assert np.all(np.diff(ends) >= 0)
    assert set(flows.columns["institution_id"]) == {s.institution_id for s in sources}
    one = meter_sources([s for s in sources if s.institution_id == "ins-a"])
    assert len(one) == int((flows.columns["institution_id"] == "ins-a").sum())


def test_offline_run_finds_the_basic_attacks_and_repeats_itself(small) -> None:
    def run():
        return run_offline(scenario_sources(small), make_engine(None, small / "institutions.toml"))

    first, second = run(), run()
    rows = first.alerts.rows()
    seen = {(r["technique"], r["institution_id"]) for r in rows}
    assert {("T1046", "bank-a"), ("T1499.001", "bank-b"), ("T1110", "ins-a")} <= seen
    assert rows == second.alerts.rows() and first.batches == second.batches >= 50


def test_batch_size_does_not_lose_attacks(small) -> None:
    engine = make_engine(None, small / "institutions.toml")
    result = run_offline(scenario_sources(small), engine, max_flows=200, batch_ms=250)
    assert {"T1046", "T1499.001", "T1110"} <= set(result.alerts.columns["technique"])


def test_bad_inputs_raise_offline_errors(tmp_path, small) -> None:
    with pytest.raises(OfflineError):
        meter_sources([CaptureSource(tmp_path / "missing.pcap", "x")])
    with pytest.raises(OfflineError):
        scenario_sources(tmp_path)
    with pytest.raises(OfflineError):
        scenario_sources(small, institution="nobody")
    with pytest.raises(FinsaError):  # the config loader's own ConfigError
        make_engine(tmp_path / "missing.toml")


def test_config_file_changes_the_engine(tmp_path, small) -> None:
    config = tmp_path / "detectors.toml"
    config.write_text("[detectors.portscan]\nenabled = false\n")
    engine = make_engine(config, small / "institutions.toml")
    assert "portscan" not in {d.name for d in engine.detectors}
    result = run_offline(scenario_sources(small, "bank-a"), engine)
    assert "T1046" not in set(result.alerts.columns["technique"])


def test_detect_command_on_a_scenario_and_on_captures(small, capsys) -> None:
    from finsa.app.cli import main

    assert main(["detect", "--scenario", str(small), "--institution", "ins-a"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and {r["institution_id"] for r in rows} == {"ins-a"}
    assert any(r["technique"] == "T1110" and r["entity"] == "203.0.113.99" for r in rows)
    capture = small / "captures" / "bank-b.pcap"
    assert main(["detect", str(capture), "--institution", "bank-b", "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("time_ms") and "T1499.001" in out
    assert main(["detect"]) == 2
    assert main(["detect", str(small / "nothing.pcap")]) == 2


def test_detect_prints_the_rows_it_refused(capsys) -> None:
    """Flow rows the engine refuses are counted per reason and printed, never dropped silently."""
    from finsa.app.cli import main
    from tests.conftest import shared_data

    capture = shared_data("benign") / "nfstream" / "iphone.pcap"  # one flow with the unspecified address
    assert main(["detect", str(capture)]) == 0
    assert "flow rows refused: 1 no_address" in capsys.readouterr().err
