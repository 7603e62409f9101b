"""finsa backtest --verdicts: an analyst's first verdicts, replayed through the product's triage,
allowlist and feedback code, make the later part quieter without missing an episode.

The scenario (every attack type, 150 s, scale 0.2) runs with the scenario's tuning made noisier
the way an operator might: ``beaconing`` judging internal pairs too and a 60 s window. Its
monitoring servers, which scrape every application server each 15 s (a benign look-alike of the
scenario), then beacon once a minute: false alerts in both parts.
"""

from __future__ import annotations

import argparse

import pytest

from finsa.app.backtest_command import main, parse_sets, scenario_engine
from finsa.app.offline import arp_sources, meter_sources, scenario_sources
from finsa.app.verdict_replay import format_verdict_table, replay_verdicts, split_ms_of
from finsa.errors import ConfigError
from finsa.scenario.generator import generate_scenario, load_ground_truth

NOISY = ["beaconing.outbound_only=false", "beaconing.window_ms=60000"]


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("verdicts")
    generate_scenario(folder, duration_s=150, scale=0.2)
    sources = scenario_sources(folder)
    truth = load_ground_truth(folder)
    return {"folder": folder, "truth": truth, "flows": meter_sources(sources), "arp": arp_sources(sources),
            "split_ms": split_ms_of(truth, 0.55)}


def _replay(scenario: dict, accept: bool = True) -> dict:
    engine = scenario_engine(scenario["folder"], None, NOISY)
    return replay_verdicts(scenario["truth"], scenario["flows"], scenario["arp"], engine, scenario["split_ms"],
                           accept=accept)


def test_verdicts_make_the_later_part_quieter_and_miss_nothing(scenario: dict) -> None:
    report = _replay(scenario)
    assert report["false"]["first"] > 0 and report["false"]["control"] > 0  # the traffic is noisy
    assert report["false"]["verdicts"] < report["false"]["control"]
    assert report["detected"]["control"] >= 1
    assert report["new_misses"] == []
    assert report["detected"]["verdicts"] >= report["detected"]["control"]
    # every false positive of the first part proposed an entry, the operator accepted it, the poller applied it
    assert report["first_verdicts"]["false_positive"] == report["proposed"] == len(report["accepted"])
    assert report["applied"] == len(report["accepted"])
    assert {e["detector"] for e in report["accepted"]} == {"beaconing"}
    # expiry counted from the cut, in flow time: 30 days
    assert {e["expires_ms"] - scenario["split_ms"] for e in report["accepted"]} == {30 * 86_400_000}
    table = format_verdict_table(report)
    assert "new misses: 0" in table and "beaconing" in table


def test_nothing_accepted_nothing_changes(scenario: dict) -> None:
    """The operator rejects every proposal: the later part is exactly the control's (the quieter
    run above comes from the accepted entries, not from the replay; beaconing learns no verdicts)."""
    report = _replay(scenario, accept=False)
    assert report["proposed"] > 0 and report["applied"] == 0
    assert report["false"]["verdicts"] == report["false"]["control"] > 0
    assert report["alerts"]["verdicts"] == report["alerts"]["control"]


def test_set_values_are_checked(tmp_path) -> None:
    assert parse_sets(["portscan.min_ports=8", "beaconing.allow_ports=[123, 9100]"]) == {
        "portscan": {"min_ports": 8}, "beaconing": {"allow_ports": [123, 9100]}}
    with pytest.raises(ConfigError) as refused:
        parse_sets(["portscan=8", "portscan.min_ports=eight"])
    assert len(refused.value.problems) == 2


def test_bad_split_or_parameter_is_exit_2(scenario: dict, capsys: pytest.CaptureFixture) -> None:
    args = argparse.Namespace(scenario=scenario["folder"], config=None, sets=["portscan.min_ports=-1"],
                              verdicts=True, split=0.5, operator="accept", batch_flows=5000, batch_ms=1000, format="table")
    assert main(args) == 2
    assert "min_ports" in capsys.readouterr().err
    assert main(argparse.Namespace(**{**vars(args), "sets": [], "split": 1.0})) == 2
    assert "split" in capsys.readouterr().err


def test_doctests() -> None:
    import doctest

    from finsa.app import backtest_command, verdict_replay

    for module in (verdict_replay, backtest_command):
        assert doctest.testmod(module).failed == 0
