"""Finding 3: forged alerts at two institutions put an arbitrary value on the sector blocklist, and
a non-address entity reached plain.txt and made /indicators/stix.json answer HTTP 500.

Now only well-formed addresses, prefixes, domains and fingerprints enter; an indicator is served
once corroborated (two institutions and a minimum severity, or an operator's approval); every feed
survives a bad entry; each indicator carries its provenance, never the institutions' names."""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import TestClient, TestServer
from aiohttp import web

from finsa.sector.campaigns import CampaignTracker
from finsa.sector.indicators import BlockEntry, REFUSED, blocklist_from_campaigns, to_stix_bundle
from finsa.sector.indicators_http import indicator_routes

MIN, T0 = 60_000, 1_700_000_000_000


def _tracker(rows: list[dict]) -> CampaignTracker:
    t = CampaignTracker()
    base = dict(subsector="bank", entity_kind="src_ip", technique="T1046", severity=4, detector="portscan",
                confidence=0.9)
    t.observe([dict(base, alert_id=f"a{i}", time_ms=T0 + i * MIN, **row) for i, row in enumerate(rows)])
    return t


def test_malformed_values_never_enter_the_blocklist() -> None:
    evil = "203.0.113.9'] OR [x:y = 'z"
    t = _tracker([dict(institution_id=i, entity=evil, domain="evil..example\n", fingerprint="<script>")
                  for i in ("bank-a", "bank-b")] +
                 [dict(institution_id=i, entity="198.51.100.7", domain="c2.evil.example") for i in ("bank-a", "bank-b")])
    before = REFUSED.value(reason="malformed")
    values = {(e.kind, e.value) for e in blocklist_from_campaigns(t.campaigns(), T0 + 10 * MIN)}
    assert ("ip", "198.51.100.7") in values and ("domain", "c2.evil.example") in values
    assert not {v for _, v in values if v in (evil, "evil..example\n", "<script>")}
    assert REFUSED.value(reason="malformed") >= before + 3


def test_an_indicator_needs_corroboration_or_an_operators_approval() -> None:
    low = _tracker([dict(institution_id=i, entity="198.51.100.8", severity=2) for i in ("bank-a", "bank-b")])
    assert blocklist_from_campaigns(low.campaigns(), T0 + 10 * MIN) == []  # two institutions, but low severity
    approved = blocklist_from_campaigns(low.campaigns(), T0 + 10 * MIN, approved={("ip", "198.51.100.8")})
    assert [(e.value, e.corroboration) for e in approved] == [("198.51.100.8", "operator")]
    one = _tracker([dict(institution_id="bank-a", entity="198.51.100.9")] * 1)
    assert blocklist_from_campaigns(one.campaigns(), T0 + 10 * MIN) == []


def test_every_feed_survives_a_bad_entry_and_names_no_institution() -> None:
    t = _tracker([dict(institution_id=i, entity="198.51.100.7") for i in ("bank-a", "bank-b", "bank-c")])
    good = blocklist_from_campaigns(t.campaigns(), T0 + 10 * MIN)
    bad = BlockEntry("ip", "not-an-address", 0.9, T0, T0, T0 + 86_400_000)
    assert len([o for o in to_stix_bundle([bad, *good], T0)["objects"] if o["type"] == "indicator"]) == len(good)

    async def fetch_all() -> dict[str, tuple[int, str]]:
        app = web.Application()
        indicator_routes(lambda: [bad, *good])(app)
        async with TestClient(TestServer(app)) as client:
            out = {}
            for path in ("/indicators/plain.txt", "/indicators/stix.json", "/indicators/misp/manifest.json"):
                resp = await client.get(path)
                out[path] = (resp.status, await resp.text())
            event = next(iter(json.loads(out["/indicators/misp/manifest.json"][1])))
            resp = await client.get(f"/indicators/misp/{event}.json")
            out["event"] = (resp.status, await resp.text())
            return out

    got = asyncio.run(fetch_all())
    assert {status for status, _ in got.values()} == {200}
    assert "not-an-address" not in "".join(text for _, text in got.values())
    assert not any(f"bank-{c}" in text for _, text in got.values() for c in "abc")
    indicator = next(o for o in json.loads(got["/indicators/stix.json"][1])["objects"] if o["type"] == "indicator")
    assert indicator["external_references"] == [{"source_name": "finsa-provenance", "description": (
        f"detectors=portscan; institutions=3; corroboration=institutions; first_seen={indicator['valid_from']}; "
        f"last_seen={indicator['modified']}")}]
