"""finsa backtest on the sector campaign: the sector picture recognises the campaign, in the
actor's order, and every payment institution the actor reaches after that was warned before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finsa import wire
from finsa.institutions import parse_registry
from finsa.app.backtest import score_campaigns
from finsa.app.backtest_command import backtest, format_table
from finsa.app.offline import run_sector
from finsa.sector.picture import SectorPicture

ACTOR = "203.0.113.30"
REGISTRY = parse_registry({"institution": [
    {"id": f"pay-{c}", "name": c, "subsector": "payment"} for c in "abcd"]})
T0 = 1_772_442_000_000


def hits(plan: list[tuple[str, int]], actor: str = ACTOR) -> wire.RecordBatch:
    """One scan alert per (institution, minutes after T0)."""
    n = len(plan)
    return wire.ALERT.make_batch({
        "alert_id": [f"{inst}-{m}" for inst, m in plan], "time_ms": [T0 + m * 60_000 for _, m in plan],
        "first_seen_ms": [T0 + m * 60_000 for _, m in plan], "institution_id": [inst for inst, _ in plan],
        "entity": [actor] * n, "entity_kind": ["src_ip"] * n, "target": ["many"] * n, "detector": ["portscan"] * n,
        "technique": ["T1046"] * n, "severity": [3] * n, "score": [10.0] * n, "confidence": [0.9] * n})


def truth(starts: list[tuple[str, int]]) -> dict:
    victims = [{"institution": inst, "start_ms": T0 + m * 60_000 - 5_000, "end_ms": T0 + m * 60_000 + 60_000}
               for inst, m in starts]
    return {"campaigns": [{"id": "campaign-1", "actor": ACTOR, "subsector": "payment", "victims": victims,
                           "start_ms": victims[0]["start_ms"], "end_ms": victims[-1]["end_ms"]}]}


def test_run_sector_ticks_every_minute_and_warns_the_rest_after_two_hits() -> None:
    plan = [("pay-a", 0), ("pay-b", 10), ("pay-c", 20), ("pay-d", 30)]
    run = run_sector(SectorPicture(REGISTRY), hits(plan))
    assert run.ticks == 31
    spread = sorted((w.institution_id, w.time_ms) for w in run.warnings if w.kind == "campaign_spread")
    assert spread == [("pay-c", T0 + 600_000), ("pay-d", T0 + 600_000)]
    (c,) = run.campaigns
    assert c.institution_order() == ["pay-a", "pay-b", "pay-c", "pay-d"]
    subsectors = {i.id: i.subsector for i in REGISTRY.institution}
    (scored,) = score_campaigns(truth(plan), run.campaigns, run.warnings, subsectors)
    assert scored["recognised"] and scored["order_matches"] and scored["recognised_ms"] == T0 + 600_000
    assert [v["institution"] for v in scored["victims"] if v["after_recognition"]] == ["pay-c", "pay-d"]
    assert scored["all_later_warned_before"] and scored["lead_median_s"] == pytest.approx(895.0)  # (595 + 1195) / 2


def test_a_late_warning_or_another_actor_fails_the_goal() -> None:
    subsectors = {i.id: i.subsector for i in REGISTRY.institution}
    plan = [("pay-a", 0), ("pay-b", 10), ("pay-c", 20), ("pay-d", 30)]
    run = run_sector(SectorPicture(REGISTRY), hits(plan))
    late = [w for w in run.warnings if w.institution_id != "pay-d"]  # pay-d's warning lost
    (scored,) = score_campaigns(truth(plan), run.campaigns, late, subsectors)
    (row,) = [v for v in scored["victims"] if v["institution"] == "pay-d"]
    assert row["warned_ms"] is None and not row["warned_before"] and not scored["all_later_warned_before"]
    swapped = truth([("pay-a", 0), ("pay-c", 10), ("pay-b", 20), ("pay-d", 30)])
    assert not score_campaigns(swapped, run.campaigns, run.warnings, subsectors)[0]["order_matches"]
    other = run_sector(SectorPicture(REGISTRY), hits(plan, actor="198.51.100.99"))
    (missed,) = score_campaigns(truth(plan), other.campaigns, other.warnings, subsectors)
    assert not missed["recognised"] and missed["lead_median_s"] is None and not missed["all_later_warned_before"]


@pytest.fixture(scope="module")
def report(sector_scenario) -> dict:
    # the default sector scenario: an hour, five payment institutions
    return backtest(sector_scenario.out_dir, batch_ms=5000)  # 5 s of flow time per batch: what a grouping worker sees  # 5 s of flow time per batch: what a grouping worker sees


def test_campaign_is_recognised_and_every_later_institution_warned_before(report) -> None:
    (c,) = report["campaigns"]
    assert c["recognised"] and c["order_matches"], json.dumps(c, indent=1)
    truth_order = [v["institution"] for v in c["victims"]]
    assert [inst for inst, _ in c["joined"]][:5] == truth_order
    assert c["recognised_ms"] < c["victims"][2]["start_ms"]  # after the second victim, before the third
    assert c["later"] == 3 and c["warned_before"] == 3 and c["all_later_warned_before"]
    later = [v for v in c["victims"] if v["after_recognition"]]
    assert all(v["warning_kind"] == "campaign_spread" for v in later)
    assert c["lead_median_s"] > 5 * 60  # warned minutes before the actor arrived
    by = {r["attack"]: r for r in report["attacks"]}
    assert by["port_scan"]["detected"] == by["port_scan"]["episodes"] == 5
    assert by["ssh_bruteforce"]["detected"] == by["ssh_bruteforce"]["episodes"] == 5
    assert report["total"]["false_alerts"] == 0, report["false"]


def test_table_shows_campaign_and_lead_times(report) -> None:
    text = format_table(report)
    assert "campaign campaign-1 (payment, actor 203.0.113.30): recognised" in text
    assert "3 of 3 institutions attacked after recognition were warned before" in text
    assert text.count("campaign_spread  ok") == 3
    assert np.isfinite(report["campaigns"][0]["lead_median_s"])
