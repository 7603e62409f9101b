"""Campaign linking: shared keys across institutions, windows, merges, bounds, determinism."""

from __future__ import annotations

import pytest

from finsa.sector.campaigns import CampaignTracker, alert_keys

MIN = 60_000


def alert(inst, t, entity="203.0.113.9", **kw):
    base = dict(alert_id=f"{inst}-{t}-{entity}-{kw.get('technique', 'T1046')}", time_ms=t, institution_id=inst,
                subsector="payment", entity=entity, entity_kind="src_ip", technique="T1046", severity=3,
                confidence=0.8)
    base.update(kw)
    return base


def test_different_attackers_stay_apart():
    t = CampaignTracker()
    t.observe([alert("pay-a", 0, "203.0.113.9"), alert("pay-b", MIN, "198.51.100.7")])
    assert t.campaigns() == []
    assert len(t.clusters) == 2


def test_shared_prefix_links_neighbouring_attackers():
    t = CampaignTracker()
    t.observe([alert("pay-a", 0, "203.0.113.9", entity_prefix="203.0.113.0/24"),
               alert("bank-x", MIN, "203.0.113.200", entity_prefix="203.0.113.0/24", subsector="bank")])
    [c] = t.campaigns()
    assert c.institution_order() == ["pay-a", "bank-x"] and c.subsectors == {"payment": 0, "bank": MIN}
    assert set(c.addresses) == {"203.0.113.9", "203.0.113.200"}


@pytest.mark.parametrize("column,value", [("intel", "evil.example"), ("fingerprint", "t13d1516h2_aaaa"),
                                          ("domain", "login-bank.example")])
def test_shared_intel_fingerprint_or_domain_links(column, value):
    t = CampaignTracker()
    t.observe([alert("pay-a", 0, "192.0.2.1", **{column: value}), alert("pay-b", MIN, "192.0.2.99", **{column: value})])
    assert [c.institution_order() for c in t.campaigns()] == [["pay-a", "pay-b"]]


def test_asn_links_only_with_the_same_technique():
    t = CampaignTracker()
    t.observe([alert("pay-a", 0, "192.0.2.1", entity_asn="CLOUDCO"),
               alert("pay-b", MIN, "198.51.100.1", entity_asn="CLOUDCO", technique="T1110")])
    assert t.campaigns() == []
    t.observe([alert("pay-c", 2 * MIN, "198.51.100.50", entity_asn="CLOUDCO", technique="T1110")])
    assert [c.institution_order() for c in t.campaigns()] == [["pay-b", "pay-c"]]


def test_severe_same_technique_within_the_window_links_but_not_after_it():
    t = CampaignTracker(window_ms=60 * MIN)
    t.observe([alert("bank-x", 0, "192.0.2.1", technique="T1499.001", severity=4, entity_kind="dst_ip"),
               alert("bank-y", 30 * MIN, "192.0.2.2", technique="T1499.001", severity=5, entity_kind="dst_ip"),
               alert("pay-a", 200 * MIN, "192.0.2.3", technique="T1499.001", severity=5, entity_kind="dst_ip")])
    [c] = t.campaigns()
    assert c.institution_order() == ["bank-x", "bank-y"]
    assert not c.addresses  # victims are not attackers: nothing to block


def test_key_links_only_within_the_window():
    t = CampaignTracker(window_ms=60 * MIN)
    t.observe([alert("pay-a", 0), alert("pay-b", 61 * MIN)])
    assert t.campaigns() == []


def test_a_bridging_alert_merges_two_clusters_into_the_older_one():
    t = CampaignTracker()
    t.observe([alert("pay-a", 0, "192.0.2.1"), alert("pay-b", MIN, "198.51.100.1")])
    ids = sorted(t.clusters, key=lambda c: t.clusters[c].first_seen_ms)
    t.observe([alert("pay-c", 2 * MIN, "192.0.2.1", fingerprint="fp-bridge-1"),
               alert("pay-d", 3 * MIN, "198.51.100.1", fingerprint="fp-bridge-1")])
    [c] = t.campaigns()
    assert c.campaign_id == ids[0] and ids[1] in c.merged_from
    assert c.institution_order() == ["pay-a", "pay-b", "pay-c", "pay-d"] and c.alert_count == 4
    assert set(t.clusters) == {ids[0]}


def test_pseudonymised_addresses_are_just_strings():
    t = CampaignTracker()
    t.observe([alert("bank-x", 0, "ps:7f3a"), alert("bank-y", MIN, "ps:7f3a")])
    assert len(t.campaigns()) == 1


def test_ids_do_not_depend_on_the_order_within_a_batch():
    rows = [alert(f"pay-{c}", i * MIN) for i, c in enumerate("abcd")]
    one, two = CampaignTracker(), CampaignTracker()
    one.observe(rows)
    two.observe(rows[2:][::-1] + rows[:2][::-1])
    assert [c.row() for c in one.campaigns()] == [c.row() for c in two.campaigns()]


def test_ids_stay_stable_when_older_alerts_arrive_late():
    t = CampaignTracker()
    t.observe([alert("pay-c", 2 * MIN), alert("pay-d", 3 * MIN)])
    [before] = t.campaigns()
    t.observe([alert("pay-a", 0)])
    [after] = t.campaigns()
    assert after.campaign_id == before.campaign_id and after.institution_order()[0] == "pay-a"


def test_state_is_bounded():
    t = CampaignTracker(max_keys=50, max_clusters=20)
    t.observe([alert("pay-a", i, f"198.51.{i // 250}.{i % 250}") for i in range(500)])
    t.expire(600)
    assert len(t.keys) <= 50 and len(t.clusters) <= 20


def test_idle_keys_and_clusters_expire():
    t = CampaignTracker(window_ms=10 * MIN, retain_ms=60 * MIN)
    t.observe([alert("pay-a", 0), alert("pay-b", MIN)])
    t.expire(30 * MIN)
    assert t.keys == {} and len(t.campaigns()) == 1
    t.expire(120 * MIN)
    assert t.campaigns() == []


def test_spread_counts_hits_per_five_minutes():
    t = CampaignTracker()
    t.observe([alert("pay-a", 0), alert("pay-b", MIN), alert("pay-c", 6 * MIN)])
    assert t.campaigns()[0].row()["spread"] == [[0, 2], [5 * MIN, 1]]


def test_alert_without_attacker_traits_has_no_keys():
    assert alert_keys({"entity": "10.0.0.1", "entity_kind": "dst_ip", "technique": "T1046", "severity": 2}) == []
