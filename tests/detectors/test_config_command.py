"""``finsa detectors check FILE [--registry FILE]`` through the real command line."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from finsa.app.cli import main
from finsa.detectors.config import load_detectors_config, parse_detectors_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "detectors.example.toml"
INSTITUTIONS = """
[[institution]]
id = "bank-a"
name = "Alpine Bank"
subsector = "bank"
[[institution]]
id = "pay-b"
name = "Pay B"
subsector = "payment"
"""


def test_check_prints_the_effective_config_which_validates_again(tmp_path: Path, capsys) -> None:
    assert main(["detectors", "check", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "[detectors.portscan]" in out and "min_ports = 20  # default" in out
    assert "[overrides.subsector.payment.portscan]\nmin_ports = 10" in out
    assert 'reason = "weekly vulnerability scan (ticket SEC-1042)"' in out
    assert "expires = 2027-01-01T00:00:00Z" in out
    assert parse_detectors_config(tomllib.loads(out)) == load_detectors_config(EXAMPLE)


def test_check_with_a_registry_shows_what_differs_per_institution(tmp_path: Path, capsys) -> None:
    registry = tmp_path / "institutions.toml"
    registry.write_text(INSTITUTIONS)
    assert main(["detectors", "check", str(EXAMPLE), "--registry", str(registry)]) == 0
    out = capsys.readouterr().out
    assert "#   bank-a (bank) bruteforce: disabled" in out
    assert "#   pay-b (payment) portscan: min_ports = 15" in out


def test_check_lists_every_problem_and_exits_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[detectors.portscan]\nmin_ports = 1\ncolour = "red"\n'
                   '[[allowlist]]\nentity = "10.0.0.0/33"\nreason = "x"\n')
    assert main(["detectors", "check", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{bad}: 3 problems",
        "  allowlist.0.entity: '10.0.0.0/33' is not an address or CIDR range",
        "  detectors.portscan.colour: unknown key",
        "  detectors.portscan.min_ports: 1 not in [2, 65536]"]


def test_check_refuses_institutions_the_registry_does_not_know(tmp_path: Path, capsys) -> None:
    registry = tmp_path / "institutions.toml"
    registry.write_text(INSTITUTIONS)
    cfg = tmp_path / "d.toml"
    cfg.write_text("[overrides.institution.bank-q.portscan]\nmin_ports = 30\n")
    assert main(["detectors", "check", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["detectors", "check", str(cfg), "--registry", str(registry)]) == 2
    assert "overrides.institution.bank-q: unknown institution" in capsys.readouterr().err
    assert main(["detectors", "check", str(cfg), "--registry", str(tmp_path / "none.toml")]) == 2


def test_check_needs_a_file() -> None:
    with pytest.raises(SystemExit) as info:
        main(["detectors", "check"])
    assert info.value.code == 2
