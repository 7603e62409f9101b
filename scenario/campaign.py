"""A sector-wide campaign: one actor works through the institutions of one subsector in turn.

The actor (``world.campaign_actor``) visits every institution of ``subsector`` (the five payment
institutions of :func:`~finsa.scenario.world.sector_world`) in a random order. The
campaign occupies 5-95 % of the run, one equal slot per institution; in each slot it first
SYN-scans the web server and then the bastion (``port_scan``, T1046), pauses, then brute-forces
the bastion's SSH (``ssh_bruteforce``, T1110). The phases keep their real-world pace however long
the run is: a scan takes at most :data:`SCAN_MAX_S` and a brute force at most
:data:`BRUTE_MAX_S`, so in the default one-hour run the actor reaches a new institution about
every eleven minutes and each visit lasts about five.

:func:`sector_campaign` returns the two ground-truth attack entries (marked ``"campaign"``) and
the campaign entry ``{"id", "actor", "subsector", "attacks", "victims": [{"institution",
"start_ms", "end_ms"}], "start_ms", "end_ms"}`` with the victims in visit order;
:func:`campaign_truth` fills ``attacks`` and the victims' spans from the numbered, clipped
attack entries.

>>> slots = visit_windows(0, 3600.0, 5)
>>> [round((scan_lo - 0) / 60e9, 1) for scan_lo, *_ in slots]
[3.0, 13.8, 24.6, 35.4, 46.2]
>>> [round((b_hi - b_lo) / 1e9) for *_, b_lo, b_hi in slots][:1]
[150]
"""

from __future__ import annotations

from finsa.scenario.attacks import bruteforce_sessions, entry, scan_host, victim
from finsa.scenario.traffic import Gen
from finsa.scenario.world import World, ip_str

__all__ = ["CAMPAIGN_ID", "SCAN_MAX_S", "BRUTE_MAX_S", "visit_windows", "sector_campaign", "campaign_truth"]

CAMPAIGN_ID = "campaign-1"
SCAN_MAX_S, PAUSE_MAX_S, BRUTE_MAX_S = 120.0, 60.0, 150.0
_SPAN = (0.05, 0.95)  # fraction of the run the campaign occupies


def visit_windows(start_ns: int, duration_s: float, visits: int) -> list[tuple[int, int, int, int]]:
    """(scan start, scan end, brute force start, brute force end) in ns of each visit, in order."""
    lo, hi = _SPAN
    slot_s = (hi - lo) * duration_s / visits
    scan_s, pause_s = min(0.3 * slot_s, SCAN_MAX_S), min(0.1 * slot_s, PAUSE_MAX_S)
    brute_s = min(0.4 * slot_s, BRUTE_MAX_S)
    out = []
    for k in range(visits):
        t = lo * duration_s + k * slot_s
        edges_s = (t, t + scan_s, t + scan_s + pause_s, t + scan_s + pause_s + brute_s)
        a, b, c, d = (start_ns + int(round(e * 1e6)) * 1000 for e in edges_s)
        out.append((a, b, c, d))
    return out


def sector_campaign(g: Gen, world: World, subsector: str = "payment") -> tuple[list[dict], dict]:
    """Add the campaign's packets to ``g.parts``; return its attack entries and the campaign entry."""
    members = [i for i in world.institutions if i.subsector == subsector]
    order = [members[int(k)] for k in g.rng.permutation(len(members))]
    actor = world.campaign_actor
    scans: list[dict] = []
    brutes: list[dict] = []
    for inst, (s_lo, s_hi, b_lo, b_hi) in zip(order, visit_windows(g.start_ns, g.duration_s, len(order))):
        mid = (s_lo + s_hi) // 2
        for host, open_ports, lo, hi in ((inst.web, {80, 443}, s_lo, mid), (inst.bastion, {22}, mid, s_hi)):
            part = scan_host(g, actor, host, open_ports, lo, hi - 1_000_000)
            g.parts.append(part)
            scans.append(victim(part, host, inst.id))
        brute = bruteforce_sessions(g, actor, inst.bastion, b_lo, b_hi)
        brutes.append(victim(brute, inst.bastion, inst.id))
    attacks = [{**entry("port_scan", actor, scans), "campaign": CAMPAIGN_ID},
               {**entry("ssh_bruteforce", actor, brutes), "campaign": CAMPAIGN_ID}]
    campaign = {"id": CAMPAIGN_ID, "actor": ip_str(actor), "subsector": subsector, "attacks": [],
                "victims": [{"institution": inst.id} for inst in order]}
    return attacks, campaign


def campaign_truth(campaign: dict, attacks: list[dict]) -> dict | None:
    """The campaign entry completed from the final attack entries (ids, victim spans); None when
    none of its attacks is left in the run."""
    mine = [a for a in attacks if a.get("campaign") == campaign["id"]]
    spans: dict[str, list[int]] = {}
    for attack in mine:
        for v in attack["victims"]:
            lo, hi = spans.get(v["institution"], (v["start_ms"], v["end_ms"]))
            spans[v["institution"]] = [min(lo, v["start_ms"]), max(hi, v["end_ms"])]
    victims = [{"institution": v["institution"], "start_ms": spans[v["institution"]][0],
                "end_ms": spans[v["institution"]][1]} for v in campaign["victims"] if v["institution"] in spans]
    if not victims:
        return None
    return {**campaign, "attacks": [a["id"] for a in mine], "victims": victims,
            "start_ms": min(v["start_ms"] for v in victims), "end_ms": max(v["end_ms"] for v in victims)}
