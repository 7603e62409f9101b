"""Routine benign traffic that looks a little like the attacks (hard negatives for detectors).

- Backups: a database server pushes a large dump (tens of MB) to the backup server of the same
  institution over SMB: bigger than the exfiltration, but internal to internal.
- Monitoring: a monitoring server scrapes every application server every 15 s (periodic,
  internal): not command-and-control beaconing.
- Web visitors over plain HTTP asking for ordinary pages with query strings.
- DNS oddities every network has: search-suffix and WPAD look-ups answered "no such name",
  long CDN host names, and the mail server's TXT (SPF/DMARC) look-ups.

All of it scales with ``scale`` and follows the business-hours rhythm where people drive it.

>>> BACKUPS[0][0], len(BENIGN_URIS) > 5
('bank-a', True)
"""

from __future__ import annotations

import numpy as np

from finsa.scenario import templates as tpl
from finsa.scenario.payloads import (QTYPE_TXT, dns_answer, dns_nxdomain, dns_query, dns_txt_answer,
                                                 http_request, http_response)
from finsa.scenario.threats import resolved_dns
from finsa.scenario.traffic import Gen
from finsa.scenario.world import SITES, InstitutionSpec, World, ip

__all__ = ["BACKUPS", "BENIGN_URIS", "routine_traffic"]

#: (institution, megabytes at scale 1, start as a fraction of the run)
BACKUPS = (("bank-a", 16, 0.33), ("ins-a", 8, 0.40))
BENIGN_URIS = ("/", "/en/", "/de/privatkunden/", "/search?q=savings+account+rates",
               "/api/v1/rates?currency=EUR&date=2026-03-02", "/assets/css/main.css?v=20260214",
               "/login?next=%2Faccount%2Foverview", "/branches?city=Frankfurt&open=now",
               "/news/2026/02/annual-report.html", "/favicon.ico", "/robots.txt",
               "/products?id=42&sort=price_asc", "/careers/jobs?department=it-security")
_CDN_NAMES = ("e6858.dsce9.akamaiedge.net", "d3k81ch9hvuctc.cloudfront.net",
              "cs1227.wpc.alphacdn.net", "star-azurefd-prod.trafficmanager.net",
              "prod-eu-central-1-ingest.observability-saas.example")


def backups(g: Gen, world: World, scale: float) -> None:
    """Database dumps pushed to the backup server, a few 6 MB sessions one after another."""
    for inst_id, megabytes, at in BACKUPS:
        inst = world.by_id(inst_id)
        sessions = max(1, int(round(megabytes * scale / 6)))
        segments = max(1, int(megabytes * scale * 1e6 / sessions / 1448))
        t0 = g.start_ns + int(at * g.duration_s * 1e6) * 1000 + np.arange(sessions) * 1_500_000_000
        g.tcp(tpl.bulk(segments), t0, ip(f"10.{inst.index}.0.21"), ip(f"10.{inst.index}.0.40"),
              g.ports(sessions), 445, 0.4, {"req": g.fill(300, 400, sessions), "resp": g.fill(80, 120, sessions),
                                             "full": g.fill(1448, 1448, sessions),
                                             "last": g.fill(100, 1448, sessions)})


def monitoring(g: Gen, inst: InstitutionSpec, period_s: float = 15.0) -> None:
    servers = inst.app_servers()
    rounds = int(g.duration_s // period_s) + 1
    phase = g.rng.uniform(0, period_s, size=len(servers))
    offset_s = (phase[None, :] + period_s * np.arange(rounds)[:, None]).ravel()
    target = np.tile(servers, rounds)
    keep = np.flatnonzero(offset_s < g.duration_s - 1)
    order = keep[np.argsort(offset_s[keep], kind="stable")]
    t0, target = g.start_ns + np.round(offset_s[order] * 1e6).astype(np.int64) * 1000, target[order]
    n = len(t0)
    g.tcp(tpl.request_response(1), t0, ip(f"10.{inst.index}.0.30"), target, g.ports(n, False), 9100,
          g.rng.uniform(0.2, 0.5, size=n), {"req": g.fill(110, 130, n), "resp": g.fill(1200, 1448, n)})


def web_visitors(g: Gen, inst: InstitutionSpec, rate: float) -> None:
    t0 = g.arrivals(rate)
    n = len(t0)
    clients = (ip("198.18.0.0") + g.rng.integers(256, 65536 - 256, size=n)).astype(np.uint32)
    uris = g.rng.choice(len(BENIGN_URIS), size=n)
    req = g.add_all(http_request(f"www.{inst.domain}", BENIGN_URIS[int(k)]) for k in uris)
    resp = g.add_all(http_response("200 OK", body_bytes=int(b)) for b in g.rng.integers(300, 1300, size=n))
    g.tcp(tpl.http(1), t0, clients, inst.web, g.ports(n), 80, g.rng.uniform(12, 90, size=n),
          {"req": req, "resp": resp}, ttl_c=g.rng.integers(44, 120, size=n))


def dns_oddities(g: Gen, world: World, inst: InstitutionSpec, rate: float) -> None:
    """NXDOMAIN from search suffixes and WPAD, long CDN names, the mail server's TXT look-ups."""
    t0 = g.arrivals(rate)
    n = len(t0)
    hosts = g.rng.choice(inst.workstations(), size=n)
    kind = g.rng.integers(0, 3, size=n)
    txid = g.rng.integers(0, 1 << 16, size=n)
    names = [f"wpad.{inst.domain}" if k == 0 else f"{SITES[int(t) % len(SITES)][0]}.{inst.domain}" if k == 1
             else _CDN_NAMES[int(t) % len(_CDN_NAMES)] for k, t in zip(kind, txid)]
    q = g.add_all(dns_query(int(t), name) for t, name in zip(txid, names))
    a = g.add_all(dns_answer(int(t), name, bytes([198, 19, 7, int(t) % 250 + 1])) if k == 2 else
                  dns_nxdomain(int(t), name) for t, name, k in zip(txid, names, kind))
    for k in range(n):  # each its own client: few per host, as in life
        resolved_dns(g, world, inst, t0[k:k + 1], int(hosts[k]), q[k:k + 1], a[k:k + 1])
    t0 = g.arrivals(rate * 0.5)
    m = len(t0)
    txid = g.rng.integers(0, 1 << 16, size=m)
    names = [f"{p}mailhost.example" for p in g.rng.choice(["", "_dmarc.", "selector1._domainkey."], size=m)]
    q = g.add_all(dns_query(int(t), name, QTYPE_TXT) for t, name in zip(txid, names))
    a = g.add_all(dns_txt_answer(int(t), name, b"v=spf1 include:_spf.mailhost.example ~all")
                  for t, name in zip(txid, names))
    resolved_dns(g, world, inst, t0, inst.mail, q, a)


def routine_traffic(g: Gen, world: World, scale: float = 1.0) -> None:
    """Add the routine benign traffic of every institution to ``g.parts``."""
    backups(g, world, scale)
    for inst in world.institutions:
        k = scale * inst.size
        monitoring(g, inst)
        web_visitors(g, inst, 0.08 * k)
        dns_oddities(g, world, inst, 0.05 * k)
