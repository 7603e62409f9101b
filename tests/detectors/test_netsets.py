"""Address sets match longest prefix first, on IPv4-mapped and IPv6 columns alike."""

from __future__ import annotations

import ipaddress

import numpy as np
from hypothesis import given, settings, strategies as st

from finsa.detectors.netsets import NetworkSet, internal_mask
from finsa.wire import ips_from_strings


def test_longest_prefix_wins() -> None:
    nets = NetworkSet(["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3"])
    assert nets.match(ips_from_strings(["10.9.0.1", "10.1.9.9", "10.1.2.3", "11.0.0.1"])).tolist() == [0, 1, 2, -1]


def test_private_ranges_are_internal() -> None:
    col = ips_from_strings(["10.0.0.1", "172.31.255.255", "172.32.0.1", "192.168.1.1", "8.8.8.8", "fd12::1", "2001:db8::1"])
    assert internal_mask(col).tolist() == [True, True, False, True, False, True, False]


def test_empty_set_and_empty_column() -> None:
    assert NetworkSet().match(ips_from_strings(["10.0.0.1"])).tolist() == [-1]
    assert NetworkSet(["10.0.0.0/8"]).match(np.zeros((0, 16), np.uint8)).tolist() == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), min_size=1, max_size=8),
       st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_matches_the_ipaddress_module(nets: list, addrs: list) -> None:
    networks = [str(ipaddress.ip_network((a, p), strict=False)) for a, p in nets]
    texts = [str(ipaddress.IPv4Address(a)) for a in addrs]
    got = NetworkSet(networks).contains(ips_from_strings(texts)).tolist()
    want = [any(ipaddress.ip_address(t) in ipaddress.ip_network(n) for n in networks) for t in texts]
    assert got == want
