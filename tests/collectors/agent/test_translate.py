"""Clear <-> pseudonym on the agent: the inverse of every internal address's pseudonym is the
address itself (IPv4 and IPv6), a pseudonym stays in its clear address's network, CIDRs keep their
length, and external addresses are left alone."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from finsa.collectors.agent.pseudonym import Pseudonymiser
from finsa.collectors.agent.translate import clear_of, pseudonym_of, translate_many

P = Pseudonymiser(bytes(range(1, 33)), ["10.0.0.0/8", "10.2.0.0/16", "fd00::/8", "fd00:1:2::/48"])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**24 - 1), st.integers(0, 2**120 - 1))
def test_every_internal_pseudonym_reads_back_in_clear(v4, v6):
    for clear in (str(ipaddress.IPv4Address((10 << 24) | v4)), str(ipaddress.IPv6Address((0xFD << 120) | v6))):
        alias = pseudonym_of(P, clear)
        assert clear_of(P, alias) == clear
        assert alias.startswith("10.") or alias.startswith("fd")  # the same internal network
        assert (alias.startswith("10.2.") == clear.startswith("10.2."))  # the longest match is kept


def test_external_addresses_are_not_translated():
    assert pseudonym_of(P, "203.0.113.66") == "203.0.113.66"
    assert pseudonym_of(P, "2001:db8::1") == "2001:db8::1"


def test_a_cidr_keeps_its_length_and_its_network_and_reads_back():
    rows = translate_many(P, ["10.7.7.0/24", "10.2.9.0/24", "10.2.0.0/16", "10.0.0.0/7", "fd00:1:2:3::/64",
                              "198.51.100.0/24", "10.7.7.9"])
    by = {r["address"]: r for r in rows}
    cidr = ipaddress.ip_network(by["10.7.7.0/24"]["pseudonym"])
    assert cidr.prefixlen == 24 and cidr.subnet_of(ipaddress.ip_network("10.0.0.0/8"))
    assert ipaddress.ip_address(by["10.7.7.9"]["pseudonym"]) in cidr  # the hosts of the /24 are in it
    assert not cidr.subnet_of(ipaddress.ip_network("10.2.0.0/16"))  # never into the nested network
    assert ipaddress.ip_network(by["10.2.9.0/24"]["pseudonym"]).subnet_of(ipaddress.ip_network("10.2.0.0/16"))
    v6 = ipaddress.ip_network(by["fd00:1:2:3::/64"]["pseudonym"])
    assert v6.prefixlen == 64 and v6.subnet_of(ipaddress.ip_network("fd00:1:2::/48"))
    # a whole internal network, or wider, is its own pseudonym: its pseudonyms never leave it
    assert by["10.2.0.0/16"]["pseudonym"] == "10.2.0.0/16" and by["10.0.0.0/7"]["pseudonym"] == "10.0.0.0/7"
    assert by["10.0.0.0/7"]["clear"] is None and by["198.51.100.0/24"] == \
        {"address": "198.51.100.0/24", "pseudonym": "198.51.100.0/24", "clear": None}
    back = translate_many(P, [by[c]["pseudonym"] for c in ("10.7.7.0/24", "10.2.9.0/24", "fd00:1:2:3::/64")])
    assert [r["clear"] for r in back] == ["10.7.7.0/24", "10.2.9.0/24", "fd00:1:2:3::/64"]


def test_an_external_address_is_nobodys_pseudonym():
    assert clear_of(P, "203.0.113.66") is None and clear_of(P, "2001:db8::1") is None
