"""Blocklist exports: a valid STIX 2.1 bundle, a MISP feed that reads back, a plain list."""

from __future__ import annotations

import json

import pytest

from finsa.sector.campaigns import CampaignTracker
from finsa.sector.indicators import (BlockEntry, blocklist_from_campaigns, to_misp_feed, to_plain,
                                      stix_pattern, to_stix_bundle, write_misp_feed)
from finsa.sector.intel_feeds import IntelFeed, IntelIndex, parse_document

MIN = 60_000
DAY = 86_400_000
T0 = 1_700_000_000_000


def campaign_blocklist(now=T0 + 10 * MIN):
    t = CampaignTracker()
    base = dict(subsector="payment", entity_kind="src_ip", technique="T1046", severity=3)
    t.observe([dict(base, alert_id=str(i), time_ms=T0 + i * MIN, institution_id=inst, entity=ent,
                    entity_prefix=pfx, confidence=conf, domain="c2.evil.example", fingerprint="t13d1516h2_8daaf6152771")
               for i, (inst, ent, pfx, conf) in enumerate([
                   ("pay-a", "203.0.113.9", "203.0.113.0/24", 0.6), ("pay-b", "203.0.113.9", "203.0.113.0/24", 0.9),
                   ("pay-c", "2001:db8:bad::1", "2001:db8:bad::/48", 0.5)])])
    t.observe([dict(base, alert_id="lonely", time_ms=T0, institution_id="pay-d", entity="192.0.2.1", confidence=1.0)])
    return blocklist_from_campaigns(t.campaigns(), now)


def test_blocklist_holds_campaign_values_with_confidence_and_expiry():
    entries = {(e.kind, e.value): e for e in campaign_blocklist()}
    assert set(entries) == {("ip", "203.0.113.9"), ("ip", "2001:db8:bad::1"), ("net", "203.0.113.0/24"),
                            ("net", "2001:db8:bad::/48"), ("domain", "c2.evil.example"),
                            ("ja4", "t13d1516h2_8daaf6152771")}  # not the single-institution attacker
    ip = entries[("ip", "203.0.113.9")]
    assert ip.confidence > 0.9 and ip.institutions == 3 and ip.expires_ms == T0 + 2 * MIN + 7 * DAY
    assert entries[("net", "203.0.113.0/24")].confidence < ip.confidence
    assert campaign_blocklist(now=T0 + 8 * DAY) == []  # expired


def test_stix_bundle_is_valid_stix_2_1():
    stix2 = pytest.importorskip("stix2")  # dev dependency proposed; skip only where absent
    bundle = to_stix_bundle(campaign_blocklist(), now_ms=T0 + 10 * MIN)
    parsed = stix2.parse(json.dumps(bundle), allow_custom=False)
    assert parsed.type == "bundle" and len(parsed.objects) == 7
    from stix2patterns.validator import run_validator

    for obj in bundle["objects"][1:]:
        assert run_validator(obj["pattern"], stix_version="2.1") == []
        assert obj["valid_until"] > obj["valid_from"]


def test_stix_bundle_is_deterministic_and_reads_back_through_intel():
    entries = campaign_blocklist()
    bundle = to_stix_bundle(entries, now_ms=T0)
    assert bundle == to_stix_bundle(entries, now_ms=T0)
    index = IntelIndex(parse_document(bundle))
    assert index.match("203.0.113.77", T0).value == "203.0.113.0/24"
    assert index.match("www.c2.evil.example", T0) and index.match("t13d1516h2_8daaf6152771", T0).kind == "ja4"
    assert index.match("203.0.113.9", T0 + 30 * DAY) is None  # valid_until carried over


def test_misp_feed_folder_reads_back(tmp_path):
    entries = campaign_blocklist()
    feed = to_misp_feed(entries, now_ms=T0)
    paths = write_misp_feed(tmp_path, feed)
    assert sorted(p.name for p in paths) == sorted(feed) and "manifest.json" in feed
    [event_uuid] = json.loads((tmp_path / "manifest.json").read_text())
    event = json.loads((tmp_path / f"{event_uuid}.json").read_text())["Event"]
    assert {a["type"] for a in event["Attribute"]} == {"ip-src", "domain", "ja4-fingerprint"}
    intel = IntelFeed([tmp_path])
    intel.refresh()
    assert intel.problems == {} and len(intel.indicators) == len(entries)


def test_plain_list():
    text = to_plain(campaign_blocklist(), now_ms=T0)
    lines = text.splitlines()
    assert lines[0].startswith("# finsa sector blocklist") and "t13d1516h2_8daaf6152771" not in text
    assert lines[1:] == sorted(["203.0.113.9", "203.0.113.0/24", "2001:db8:bad::1", "2001:db8:bad::/48",
                                "c2.evil.example"])


def test_quotes_in_values_are_escaped_and_such_values_are_never_served():
    entry = BlockEntry("domain", "it's.example", 0.5, 0, 0, 10)
    assert stix_pattern(entry) == "[domain-name:value = 'it\\'s.example']"
    assert [o["type"] for o in to_stix_bundle([entry], now_ms=0)["objects"]] == ["identity"]  # not a domain name
