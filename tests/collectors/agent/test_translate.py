"""Clear <-> pseudonym on the agent: the inverse of every internal address's pseudonym is the
address itself (IPv4 and IPv6), and external addresses are left alone."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from finsa.collectors.agent.pseudonym import Pseudonymiser
from finsa.collectors.agent.translate import clear_of, pseudonym_of

P = Pseudonymiser(bytes(range(1, 33)), ["10.0.0.0/8", "fd00::/8"])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**24 - 1), st.integers(0, 2**120 - 1))
def test_every_internal_pseudonym_reads_back_in_clear(v4, v6):
    for clear in (str(ipaddress.IPv4Address((10 << 24) | v4)), str(ipaddress.IPv6Address((0xFD << 120) | v6))):
        alias = pseudonym_of(P, clear)
        assert clear_of(P, alias) == clear


def test_external_addresses_are_not_translated():
    assert pseudonym_of(P, "203.0.113.66") == "203.0.113.66"
    assert pseudonym_of(P, "2001:db8::1") == "2001:db8::1"
