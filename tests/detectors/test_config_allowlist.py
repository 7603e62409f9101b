"""Allowlist entries of the detectors file: matching by range, detector, institution and flow time."""

from __future__ import annotations

import pickle

import pytest
from pydantic import ValidationError

from finsa.detectors.allowlist import AllowEntry, Allowlist

EXPIRES_MS = 1_798_761_600_000  # 2027-01-01T00:00:00Z


def entry(**kw) -> AllowEntry:
    return AllowEntry(**{"entity": "10.1.2.0/24", "reason": "backup job", **kw})


def test_an_entry_matches_its_range_only() -> None:
    allow = Allowlist([entry()])
    assert allow.allows("bruteforce", "bank-a", "10.1.2.200", 0)
    assert not allow.allows("bruteforce", "bank-a", "10.1.3.1", 0)
    assert not allow.allows("bruteforce", "bank-a", "many", 0)  # not an address
    assert not allow.allows("bruteforce", "bank-a", "", 0)


def test_ipv6_and_mapped_addresses() -> None:
    allow = Allowlist([entry(entity="2001:db8::/32"), entry(entity="192.0.2.7")])
    assert allow.allows("x", "bank-a", "2001:db8::1", 0)
    assert allow.allows("x", "bank-a", "::ffff:192.0.2.7", 0)
    assert allow.allows("x", "bank-a", "[2001:db8::5]", 0)
    assert not allow.allows("x", "bank-a", "2001:db9::1", 0)
    assert not allow.allows("x", "bank-a", "192.0.2.8", 0)


def test_detectors_institutions_and_expiry_narrow_an_entry() -> None:
    allow = Allowlist([entry(detectors=["portscan"], institutions=["bank-a", "pay-b"],
                             expires="2027-01-01T00:00:00Z")])
    assert allow.allows("portscan", "pay-b", "10.1.2.3", EXPIRES_MS - 1)
    assert not allow.allows("portscan", "pay-b", "10.1.2.3", EXPIRES_MS)  # expiry is exclusive
    assert not allow.allows("synflood", "pay-b", "10.1.2.3", 0)
    assert not allow.allows("portscan", "bank-c", "10.1.2.3", 0)


def test_split_keeps_order_and_separates_the_suppressed() -> None:
    rows = [{"detector": "portscan", "institution_id": "bank-a", "entity": e, "time_ms": 0}
            for e in ("10.1.2.1", "10.9.9.9", "10.1.2.2")]
    kept, dropped = Allowlist([entry()]).split(rows)
    assert [r["entity"] for r in kept] == ["10.9.9.9"] and [r["entity"] for r in dropped] == ["10.1.2.1", "10.1.2.2"]
    assert Allowlist().split(rows) == (rows, [])


@pytest.mark.parametrize("bad", [{"entity": "10.1.2.0/33"}, {"entity": "bank-a"}, {"reason": ""},
                                 {"detectors": ["nosuch"]}, {"expires": "2027-01-01T00:00:00"},
                                 {"colour": "red"}])
def test_bad_entries_are_refused(bad: dict) -> None:
    with pytest.raises(ValidationError):
        entry(**bad)


def test_an_allowlist_pickles() -> None:
    allow = Allowlist([entry(expires="2027-01-01T00:00:00Z")])
    again = pickle.loads(pickle.dumps(allow))
    assert again.allows("portscan", "bank-a", "10.1.2.3", 0) and len(again) == 1
