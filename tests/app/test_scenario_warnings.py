"""The default scenario's early warnings: institutions exposing what the scanner attacks are told.

``finsa run`` replays the default scenario; its scanner works through bank-a, sec-a and pay-a.
With the scenario's inventory (every institution's web portal, SSH bastion, name server, mail relay
and payment API), the sector picture warns the institutions exposing the kind of service being
scanned once two institutions were hit: pay-a before the scanner reaches it, bank-b which it never
reaches. Without an inventory no such warning exists (no subsector has a third member hit).
"""

from __future__ import annotations

import pytest

from finsa.collectors.collect_command import scenario_sources
from finsa.sector.enrich import AssetMap, Asset, load_inventory
from finsa.institutions import load_registry
from finsa.app.offline import make_engine, run_offline, run_sector
from finsa.sector.picture import SectorPicture

SCANNER = "203.0.113.66"
STEP_MS = 5_000  # the embedded worker's sector tick


@pytest.fixture(scope="module")
def scenario(default_scenario):
    folder = default_scenario.out_dir  # seed 7
    engine = make_engine(folder / "detectors.toml", folder / "institutions.toml")
    result = run_offline(scenario_sources(folder)[0], engine, max_flows=5000, batch_ms=1000)
    return folder, result


def _run(folder, result, inventory: bool):
    picture = SectorPicture.from_files(folder / "institutions.toml",
                                       folder / "inventory.toml" if inventory else None)
    return run_sector(picture, result.alerts, result.flows, step_ms=STEP_MS)


def test_the_scenario_inventory_is_valid_and_names_every_institution(scenario) -> None:
    folder, _ = scenario
    registry = load_registry(folder / "institutions.toml")
    inventory = load_inventory(folder / "inventory.toml", registry)
    assert {a.institution for a in inventory.asset} == set(registry.by_id)
    kinds = {(a.institution, a.kind) for a in inventory.asset}
    assert ("bank-a", "online_banking") in kinds and ("sec-a", "trading") in kinds
    assert ("pay-a", "payment_gateway") in kinds and ("ins-a", "remote_access") in kinds


def test_exposed_institutions_are_warned_and_pay_a_before_the_scanner_arrives(scenario) -> None:
    folder, result = scenario
    run = _run(folder, result, inventory=True)
    scan = next(c for c in run.campaigns if SCANNER in c.addresses)
    spread = [w for w in run.warnings if w.kind == "campaign_spread" and w.evidence["campaign_id"] == scan.campaign_id]
    warned = {w.institution_id: w for w in spread}
    assert {"bank-b", "pay-a"} <= set(warned)
    assert not {"bank-a", "sec-a"} & set(warned)  # the first two victims are hit, not warned
    assert warned["pay-a"].time_ms < scan.institutions["pay-a"]  # told before its first hit
    assert SCANNER in warned["pay-a"].indicators
    assert "online_banking" in warned["bank-b"].why and "which you expose" in warned["bank-b"].why


def test_without_the_inventory_the_scan_warns_nobody(scenario) -> None:
    folder, result = scenario
    run = _run(folder, result, inventory=False)
    assert [w for w in run.warnings if w.kind == "campaign_spread"] == []


def test_a_host_wide_target_matches_the_asset_at_that_address() -> None:
    assets = AssetMap([Asset(institution="bank-a", service="portal", kind="online_banking",
                             address="192.0.2.10", ports=[443])])
    assert assets.find("bank-a", "192.0.2.10", 0).kind == "online_banking"   # a port scan of the host
    assert assets.find("bank-a", "192.0.2.10", 443) is not None
    assert assets.find("bank-a", "192.0.2.10", 22) is None                    # another service
    assert assets.find("bank-b", "192.0.2.10", 0) is None                      # another institution
