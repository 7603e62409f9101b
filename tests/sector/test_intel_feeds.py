"""Intel feeds: STIX 2.1 and MISP fixtures load, hot-reload, refuse malformed files, match."""

from __future__ import annotations

import json
import os

import pytest

from finsa.sector.intel_feeds import IntelFeed, IntelIndex, parse_document

DAY_MS = 86_400_000
NOW = 1_700_000_000_000


def stix(*patterns, valid_until=None):
    objs = [{"type": "identity", "id": "identity--x", "name": "CERT"}]
    for i, p in enumerate(patterns):
        obj = {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{i}", "pattern": p,
               "pattern_type": "stix", "valid_from": "2023-01-01T00:00:00Z", "confidence": 80}
        if valid_until:
            obj["valid_until"] = valid_until
        objs.append(obj)
    return {"type": "bundle", "id": "bundle--1", "objects": objs}


def misp(*attributes):
    return {"Event": {"info": "phishing wave", "Tag": [{"name": "tlp:green"}],
                      "Attribute": [dict(a, uuid=f"u{i}") for i, a in enumerate(attributes)],
                      "Object": [{"Attribute": [{"type": "ja3-fingerprint-md5", "value": "E7D705A3286E19EA42F587B344EE6865"}]}]}}


def write(path, doc):
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_stix_addresses_networks_domains_and_expiry():
    doc = stix("[ipv4-addr:value = '198.51.100.7']", "[ipv6-addr:value = '2001:db8:bad::/48']",
               "[domain-name:value = 'evil.example'] OR [ipv4-addr:value = '192.0.2.0/25']")
    index = IntelIndex(parse_document(doc))
    assert index.match("198.51.100.7", NOW).ref == "indicator--0"
    assert index.match("::ffff:198.51.100.7", NOW) is not None
    assert index.match("2001:db8:bad:1::5", NOW).value == "2001:db8:bad::/48"
    assert index.match("192.0.2.100", NOW).value == "192.0.2.0/25"
    assert index.match("192.0.2.200", NOW) is None
    assert index.match("login.www.evil.example", NOW).value == "evil.example"
    assert index.match("notevil.example", NOW) is None
    assert index.match("198.51.100.7", NOW).confidence == 0.8
    expired = IntelIndex(parse_document(stix("[ipv4-addr:value = '198.51.100.7']", valid_until="2023-06-01T00:00:00Z")))
    assert expired.match("198.51.100.7", NOW) is None


def test_unsupported_stix_patterns_are_skipped():
    doc = stix("[ipv4-addr:value = '198.51.100.7'] AND [domain-name:value = 'x.example']",
               "[file:hashes.MD5 = 'abc']")
    assert parse_document(doc) == []


def test_misp_attributes_objects_and_context():
    doc = misp({"type": "ip-dst", "value": "203.0.113.50"}, {"type": "domain|ip", "value": "bad.example|203.0.113.51"},
               {"type": "ip-src|port", "value": "203.0.113.52|4444"}, {"type": "hostname", "value": "c2.bad.example"},
               {"type": "ip-dst", "value": "203.0.113.60", "to_ids": False}, {"type": "comment", "value": "hi"})
    index = IntelIndex(parse_document(doc))
    assert index.match("203.0.113.50", NOW) and index.match("203.0.113.52", NOW)
    assert index.match("203.0.113.60", NOW) is None  # context, not an indicator
    assert index.match("x.bad.example", NOW).value == "bad.example"
    assert index.match("e7d705a3286e19ea42f587b344ee6865", NOW).kind == "ja3"
    assert index.match("203.0.113.50", NOW).labels == ("tlp:green",)


def test_feed_folder_loads_reloads_on_change_and_drops_deleted_files(tmp_path):
    a = write(tmp_path / "a.json", stix("[ipv4-addr:value = '198.51.100.7']"))
    write(tmp_path / "b.json", misp({"type": "ip-dst", "value": "203.0.113.50"}))
    write(tmp_path / "manifest.json", {"x": {}})
    feed = IntelFeed([tmp_path])
    assert feed.refresh() is True and feed.problems == {}
    assert feed.index.match("198.51.100.7", NOW) and feed.index.match("203.0.113.50", NOW)
    assert feed.refresh() is False  # nothing changed
    write(a, stix("[ipv4-addr:value = '198.51.100.8']"))
    os.utime(a, ns=(a.stat().st_mtime_ns + 10**9,) * 2)
    assert feed.refresh() is True
    assert feed.index.match("198.51.100.7", NOW) is None and feed.index.match("198.51.100.8", NOW)
    a.unlink()
    assert feed.refresh() is True and feed.index.match("198.51.100.8", NOW) is None


@pytest.mark.parametrize("content,reason", [
    ("{not json", "bad_json"), ("[1, 2]", "not_an_object"), ({"hello": 1}, "unknown_format"),
    ({"type": "bundle"}, "not_stix_bundle"), ({"Event": "x"}, "not_misp_event")])
def test_malformed_files_are_refused_with_a_reason_and_others_kept(tmp_path, content, reason):
    write(tmp_path / "good.json", stix("[ipv4-addr:value = '198.51.100.7']"))
    bad = write(tmp_path / "bad.json", content)
    feed = IntelFeed([tmp_path])
    feed.refresh()
    assert feed.problems == {str(bad): reason}
    assert feed.index.match("198.51.100.7", NOW) is not None
    assert feed.refresh() is False  # the same bad file is not re-read every poll
    write(bad, stix("[domain-name:value = 'fixed.example']"))
    os.utime(bad, ns=(bad.stat().st_mtime_ns + 10**9,) * 2)
    feed.refresh()
    assert feed.problems == {} and feed.index.match("fixed.example", NOW)


def test_bad_values_inside_a_good_file_are_skipped(tmp_path):
    feed = IntelFeed([write(tmp_path / "f.json", stix("[ipv4-addr:value = '999.1.1.1']",
                                                       "[domain-name:value = 'ok.example']"))])
    feed.refresh()
    assert [i.value for i in feed.indicators] == ["ok.example"]


def test_missing_path_is_a_problem_not_a_crash(tmp_path):
    feed = IntelFeed([tmp_path / "absent.json"])
    assert feed.refresh() is False and feed.problems == {str(tmp_path / "absent.json"): "missing"}
