"""The detectors file: strict schema, every problem listed with its path, parameters from signatures."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from finsa.detectors import registry as detector_registry
from finsa.detectors.base import Detector
from finsa.detectors.config import (Config, default_config, detector_params, load_detectors_config,
                                    parse_detectors_config)
from finsa.errors import ConfigError
from finsa.institutions import parse_registry

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "detectors.example.toml"


def problems_of(text: str, registry=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_detectors_config(tomllib.loads(text), "t.toml", registry)
    return info.value.problems


def test_empty_file_means_every_registered_detector_with_its_defaults() -> None:
    cfg = parse_detectors_config({})
    assert set(cfg.detectors) == set(detector_registry.names())
    for name, cls in detector_registry.DETECTORS.items():
        built = cls(**cfg.detectors[name].params)
        assert {k: v for k, v in built._get_params().items() if k != "seed"} == cfg.detectors[name].params
        assert cfg.detectors[name].enabled == (name in detector_registry.DEFAULT_NAMES)
    assert cfg.names()[:len(detector_registry.DEFAULT_NAMES)] == list(detector_registry.DEFAULT_NAMES)
    assert cfg == default_config()


def test_every_problem_is_listed_at_once_with_its_path() -> None:
    found = problems_of("""
        [detectors.portscan]
        min_ports = "20"
        min_hosts = 1
        colour = "red"
        [detectors.bruteforce]
        ports = [22, 70000]
        [detectors.nosuch]
        x = 1
        [overrides.subsector.payment.portscan]
        min_ports = 1
        [overrides.subsector.paymnt.portscan]
        min_ports = 10
        [overrides.institution.bank-a.synflood]
        k_sigma = -1.0
        typo = 3
        [[allowlist]]
        entity = "10.1.2.300/24"
        detectors = ["portscan", "nope"]
        reason = ""
        expires = 2027-01-01T00:00:00
    """)
    assert found == sorted(found)
    paths = [p.split(": ", 1)[0] for p in found]
    assert paths == [
        "allowlist.0.detectors", "allowlist.0.entity", "allowlist.0.expires", "allowlist.0.reason",
        "detectors.bruteforce.ports", "detectors.nosuch", "detectors.portscan.colour",
        "detectors.portscan.min_hosts", "detectors.portscan.min_ports",
        "overrides.institution.bank-a.synflood.k_sigma", "overrides.institution.bank-a.synflood.typo",
        "overrides.subsector.payment.portscan.min_ports", "overrides.subsector.paymnt"]
    reasons = dict(p.split(": ", 1) for p in found)
    assert reasons["detectors.nosuch"] == "unknown key"
    assert reasons["detectors.portscan.colour"] == "unknown key"
    assert reasons["detectors.portscan.min_ports"] == "Input should be a valid integer"
    assert reasons["detectors.portscan.min_hosts"] == "1 not in [2, 16777216]"
    assert reasons["overrides.subsector.payment.portscan.min_ports"] == "1 not in [2, 65536]"
    assert "not an address or CIDR" in reasons["allowlist.0.entity"]
    assert "nope" in reasons["allowlist.0.detectors"]
    assert "timezone" in reasons["allowlist.0.expires"]


@pytest.mark.parametrize("text, path", [
    ("[detectors.portscan]\nmin_ports = 20.5\n", "detectors.portscan.min_ports"),
    ("[detectors.portscan]\nmin_ports = true\n", "detectors.portscan.min_ports"),
    ("[detectors.portscan]\nenabled = 1\n", "detectors.portscan.enabled"),
    ("[detectors.bruteforce]\nports = 22\n", "detectors.bruteforce.ports"),
    ("[detectors.portscan]\nseed = 3\n", "detectors.portscan.seed"),
    ("top = 1\n", "top"),
    ("[overrides]\nregion = {}\n", "overrides.region"),
    ("[[allowlist]]\nentity = \"10.0.0.0/8\"\n", "allowlist.0.reason"),
    ("[[allowlist]]\nentity = \"10.0.0.0/8\"\nreason = \"x\"\nowner = \"me\"\n", "allowlist.0.owner"),
])
def test_unknown_keys_and_wrong_types_are_refused(text: str, path: str) -> None:
    assert path in [p.split(": ", 1)[0] for p in problems_of(text)]


def test_parameters_that_only_fail_together_are_reported() -> None:
    found = problems_of("[detectors.portscan]\ntheta0 = 0.3\ntheta1 = 0.4\n")
    assert len(found) == 1 and found[0].startswith("detectors.portscan.theta1: ")
    found = problems_of("[detectors.synflood]\nwindow_ms = 20000\n[overrides.institution.bank-a.synflood]\nbin_ms = 30000\n")
    assert [p.split(": ")[0] for p in found] == ["overrides.institution.bank-a.synflood.bin_ms"]


def test_bounds_that_limit_each_other_can_be_moved_together() -> None:
    # min_reconnects may not exceed min_beacons: lowering both at once is valid, lowering one is not.
    cfg = parse_detectors_config(tomllib.loads("[detectors.beaconing]\nmin_beacons = 4\nmin_reconnects = 4\n"))
    params = cfg.detectors["beaconing"].params
    assert (params["min_beacons"], params["min_reconnects"]) == (4, 4)
    found = problems_of("[detectors.beaconing]\nmin_beacons = 4\n")
    assert found == ["detectors.beaconing.min_reconnects: 5 not in [3, 4]"]  # the default it now breaks


def test_values_keep_the_types_the_detectors_expect() -> None:
    cfg = parse_detectors_config(tomllib.loads("[detectors.bruteforce]\nports = [22, 2222]\nmax_cv = 1\n"))
    settings = cfg.detectors["bruteforce"]
    assert settings.params["ports"] == (22, 2222) and settings.explicit == {"ports", "max_cv"}
    assert detector_registry.create("bruteforce", **settings.params).ports == (22, 2222)


def test_overrides_stack_subsector_then_institution() -> None:
    cfg = parse_detectors_config(tomllib.loads("""
        [detectors.portscan]
        min_ports = 30
        [overrides.subsector.payment.portscan]
        min_ports = 10
        min_hosts = 5
        [overrides.institution.pay-b.portscan]
        min_ports = 40
        [overrides.institution.bank-a.portscan]
        enabled = false
    """))
    assert cfg.effective("portscan") == (True, cfg.detectors["portscan"].params)
    on, params = cfg.effective("portscan", "pay-a", "payment")
    assert on and (params["min_ports"], params["min_hosts"]) == (10, 5)
    on, params = cfg.effective("portscan", "pay-b", "payment")
    assert on and (params["min_ports"], params["min_hosts"]) == (40, 5)
    assert cfg.effective("portscan", "bank-a", "bank")[0] is False
    assert cfg.effective("portscan", "bank-b", "bank") == cfg.effective("portscan")


def test_registry_checks_institution_ids_and_stacked_overrides() -> None:
    registry = parse_registry({"institution": [
        {"id": "bank-a", "name": "A", "subsector": "bank"},
        {"id": "pay-b", "name": "B", "subsector": "payment"}]})
    text = """
        [overrides.subsector.payment.portscan]
        theta0 = 0.3
        [overrides.institution.pay-b.portscan]
        theta1 = 0.4
        [overrides.institution.bank-z.portscan]
        min_ports = 30
        [[allowlist]]
        entity = "10.0.0.1"
        institutions = ["bank-a", "bank-y"]
        reason = "backup"
    """
    parse_detectors_config(tomllib.loads(text))  # without a registry nothing can be said
    paths = [p.split(": ")[0] for p in problems_of(text, registry)]
    assert paths == ["allowlist.0.institutions", "overrides.institution.bank-z",
                     "overrides.institution.pay-b.portscan.theta1"]


class ToyDetector(Detector):
    """A detector nobody told the config module about."""

    name = "toy"
    technique = "T0000"

    def __init__(self, *, threshold: float = 1.5, ports: tuple[int, ...] = (1, 2), label: str = "x",
                 window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.threshold, self.ports, self.label = threshold, tuple(ports), label
        self._check(threshold=(threshold, 0.0, 10.0))

    def process(self, flows):
        return []


def test_a_newly_registered_detector_is_configurable(monkeypatch) -> None:
    monkeypatch.setitem(detector_registry.DETECTORS, "toy", ToyDetector)
    assert set(detector_params(ToyDetector)) == {"threshold", "ports", "label", "window_ms"}
    cfg = parse_detectors_config(tomllib.loads('[detectors.toy]\nenabled = true\nthreshold = 2\nports = [7]\n'))
    assert cfg.detectors["toy"].enabled and cfg.detectors["toy"].params == {
        "threshold": 2, "ports": (7,), "label": "x", "window_ms": 60_000}
    assert parse_detectors_config({}).detectors["toy"].enabled is False  # not in DEFAULT_NAMES
    paths = [p.split(": ")[0] for p in problems_of('[detectors.toy]\nthreshold = 20.0\nlabel = 3\nother = 1\n')]
    assert paths == ["detectors.toy.label", "detectors.toy.other", "detectors.toy.threshold"]


def test_files_are_read_and_their_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "d.toml"
    good.write_text("[detectors.portscan]\nmin_ports = 25\n")
    assert load_detectors_config(good).detectors["portscan"].params["min_ports"] == 25
    bad = tmp_path / "bad.toml"
    bad.write_text("[detectors.portscan\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_detectors_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_detectors_config(tmp_path / "missing.toml")


def commented_defaults(text: str) -> dict[str, dict[str, object]]:
    """``# param = value`` lines of each ``[detectors.NAME]`` table of the example, parsed."""
    out: dict[str, dict[str, object]] = {}
    section = None
    for line in text.splitlines():
        header = re.match(r"^\[detectors\.(\w+)\]", line)
        if header or line.startswith("["):
            section = header[1] if header else None
            out.setdefault(section, {})
        elif section and re.match(r"^# [a-z_0-9]+ = ", line):
            out[section].update(tomllib.loads(line[2:]))
    return out


def test_the_example_file_validates_and_documents_every_detector() -> None:
    cfg = load_detectors_config(EXAMPLE)
    assert isinstance(cfg, Config) and cfg.allowlist and cfg.subsector and cfg.institution
    documented = commented_defaults(EXAMPLE.read_text())
    defaults = default_config()
    for name in detector_registry.names():
        assert name in documented, f"docs/detectors.example.toml lacks a [detectors.{name}] table"
        expected = {p: list(v) if isinstance(v, tuple) else v for p, v in defaults.detectors[name].params.items()}
        assert not cfg.detectors[name].explicit, "the example's [detectors] tables show defaults, commented"
        assert documented[name] == expected, f"the example's defaults of {name} differ from the code"


def test_the_tuning_guide_describes_every_parameter() -> None:
    guide = (EXAMPLE.parent / "detectors.md").read_text()
    for name, settings in default_config().detectors.items():
        assert f"`{name}`" in guide or re.search(rf"^### {name}\b", guide, re.M), f"docs/detectors.md lacks {name}"
        missing = [p for p in settings.params if f"`{p}`" not in guide]
        assert not missing, f"docs/detectors.md does not describe {name}: {missing}"
