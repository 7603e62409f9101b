"""Enrichment: offline GeoIP, the strict inventory file, asset and provider look-ups."""

from __future__ import annotations

import pickle
import socket

import numpy as np
import pytest

from finsa import wire
from finsa.errors import ConfigError
from finsa.sector import geo as geo_module
from finsa.sector.enrich import Enricher, load_inventory, parse_inventory
from finsa.sector.geo import GeoLookup
from finsa.sector.intel_feeds import Indicator, IntelIndex
from tests.sector.sector_helpers import registry

INVENTORY = """
[[asset]]
institution = "pay-a"
service = "card gateway"
kind = "payment_gateway"
address = "10.1.0.0/24"
ports = [443]
criticality = 5

[[provider]]
id = "cloud-x"
name = "Cloud X"
kind = "cloud"
networks = ["192.0.2.0/24"]
domains = ["cloudx.example"]
dependents = ["pay-a", "bank-x"]
"""


def test_geoip_answers_offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("GeoIP tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(geo_module, "_database", None)  # load the tables with the network refused
    lookup = GeoLookup()
    google = lookup.lookup("8.8.8.8")
    assert google.country == "US" and google.asn == "GOOGLE" and google.asn_prefix == "8.8.8.0/24"
    assert lookup.lookup("::ffff:8.8.8.8").country == "US"
    assert lookup.lookup("2001:4860:4860::8888").country == "US"
    assert lookup.lookup("192.168.1.1").private and lookup.lookup("192.168.1.1").country == ""
    assert lookup.lookup("pseudonym-7").country == ""


def test_geo_cache_is_bounded_and_not_pickled():
    lookup = GeoLookup(max_cache=4)
    for i in range(10):
        lookup.lookup(f"8.8.4.{i}")
    assert len(lookup._cache) <= 4
    assert pickle.loads(pickle.dumps(lookup))._cache == {}


def test_inventory_file_loads(tmp_path):
    path = tmp_path / "inventory.toml"
    path.write_text(INVENTORY)
    inv = load_inventory(path, registry())
    assert inv.asset[0].criticality == 5 and inv.provider[0].dependents == ["pay-a", "bank-x"]


def test_inventory_refuses_unknown_keys_institutions_and_bad_values():
    bad = {"asset": [{"institution": "nobody", "service": "x", "address": "10.0.0.300", "colour": "red",
                      "ports": [70000]}],
           "provider": [{"id": "p", "name": "P", "dependents": ["ghost"]}, {"id": "p", "name": "Q"}]}
    with pytest.raises(ConfigError) as err:
        parse_inventory(bad, registry())
    text = str(err.value)
    assert "colour: unknown key" in text and "address" in text and "ports" in text
    good_shape = {"asset": [{"institution": "nobody", "service": "x", "address": "10.0.0.1"}],
                  "provider": [{"id": "p", "name": "P", "dependents": ["ghost"]}, {"id": "p", "name": "Q"}]}
    with pytest.raises(ConfigError) as err:
        parse_inventory(good_shape, registry())
    assert set(err.value.problems) == {"asset.0.institution: unknown institution nobody",
                                       "provider.0.dependents: unknown institution ghost", "provider.id: duplicate id p"}


def test_enrich_adds_registry_asset_provider_geo_and_intel_columns():
    inv = parse_inventory(__import__("tomllib").loads(INVENTORY), registry())
    enricher = Enricher(registry(), inv.asset, inv.provider)
    batch = wire.ALERT.make_batch({
        "institution_id": ["pay-a", "pay-a", "bank-x", "cloud-x"],
        "entity": ["8.8.8.8", "203.0.113.9", "8.8.8.8", "198.51.100.1"],
        "target": ["10.1.0.7:443", "10.1.0.7:22", "192.0.2.10:53", "192.0.2.1:443"],
        "evidence": ['{"features": {"tls_sni": "login.evil.example", "tls_ja4": "t13d_abcdef12"}}', "{}", "{}", "{}"]})
    intel = IntelIndex([Indicator("domain", "evil.example"), Indicator("ip", "203.0.113.0/24")])
    out = enricher.enrich(batch.columns, intel, now_ms=0)
    assert out["subsector"].tolist() == ["payment", "payment", "bank", "unknown"]
    assert out["criticality"].tolist() == [3, 3, 5, 3]
    assert out["entity_country"].tolist()[0] == "US" and out["entity_asn"][0] == "GOOGLE"
    assert out["entity_prefix"].tolist()[:2] == ["8.8.8.0/24", "203.0.113.0/24"]
    assert out["target_kind"].tolist() == ["payment_gateway", "", "", ""]  # port 22 is not the gateway
    assert out["target_criticality"].tolist() == [5, 0, 0, 0]
    assert out["provider"].tolist() == ["", "", "cloud-x", "cloud-x"]
    assert out["domain"][0] == "login.evil.example" and out["fingerprint"][0] == "t13d_abcdef12"
    assert out["intel"].tolist() == ["evil.example", "203.0.113.0/24", "", ""]
    assert all(len(col) == 4 for col in out.values())


def test_enrich_of_an_empty_batch():
    out = Enricher(registry()).enrich(wire.ALERT.make_batch({}, n_rows=0).columns)
    assert all(len(col) == 0 for col in out.values()) and isinstance(out["criticality"], np.ndarray)


def test_pseudonyms_of_internal_hosts_are_enriched_as_internal_never_as_a_foreign_country():
    """An agent's pseudonyms keep their network: a 10.x host is still private at the centre, and a
    host of an institution's own public range (8.8.8.0/24 stands for one here) keeps its AS and country."""
    from finsa.collectors.agent.pseudonym import Pseudonymiser

    p = Pseudonymiser(bytes(range(32)), ["10.0.0.0/8", "192.168.0.0/16", "8.8.8.0/24"])
    hosts = np.random.default_rng(5).integers(0, 256, size=(120, 3))
    clear = [f"10.{a}.{b}.{c}" for a, b, c in hosts[:80]] + [f"192.168.{b}.{c}" for _, b, c in hosts[80:110]] \
        + [f"8.8.8.{c}" for _, _, c in hosts[110:]]
    pseudo = wire.ips_to_strings(p.apply(wire.ips_from_strings(clear)))
    assert sum(a != b for a, b in zip(clear, pseudo)) >= 110  # they are pseudonyms
    batch = wire.ALERT.make_batch({"institution_id": ["pay-a"] * len(pseudo), "entity": pseudo,
                                   "target": ["192.0.2.10:443"] * len(pseudo)})
    out = Enricher(registry()).enrich(batch.columns, now_ms=0)
    assert set(out["entity_country"][:110].tolist()) == {""} and set(out["entity_asn"][:110].tolist()) == {""}
    assert all(GeoLookup().lookup(a).private for a in pseudo[:110])
    assert set(out["entity_country"][110:].tolist()) == {"US"} and set(out["entity_asn"][110:].tolist()) == {"GOOGLE"}
