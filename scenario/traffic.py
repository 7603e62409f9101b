"""Benign background traffic of the scenario, institution by institution.

Sessions start as a Poisson process thinned by a business-hours rhythm (:func:`business_weight`,
Central European time, quiet nights and weekends). Each institution gets, scaled by its size
and by ``scale``:

- staff browsing outside sites: a DNS lookup through the internal resolver (which asks the
  upstream resolver on a cache miss), then TLS with the site's SNI (or plain HTTP for OCSP/CRL);
- outside clients using the institution's public web site (TLS on 443, redirects on 80);
- internal client/server traffic (directory, database, file share, intranet);
- mail relays delivering to the mail server, outside resolvers asking its public DNS server;
- one administrator's SSH session to the bastion; partner API calls to payment institutions
  (seen by both institutions' taps).

>>> import numpy as np
>>> float(business_weight(np.array([1772442000000]))[0])  # Monday 2026-03-02 10:00 CET
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
from numpy.typing import ArrayLike

from finsa.scenario import templates as tpl
from finsa.scenario.packets import Packets
from finsa.scenario.payloads import (PayloadTable, dns_answer, dns_query, http_request,
                                                 http_response, ssh_banner, ssh_kexinit,
                                                 tls_client_hello, tls_server_flight)
from finsa.scenario.sessions import Sessions, Template, instantiate
from finsa.scenario.world import SITES, InstitutionSpec, World, ip, site_address

__all__ = ["Gen", "business_weight", "benign_traffic"]

_HOURS = [0, 6, 7, 8, 9, 12, 13, 14, 17, 18, 20, 22, 24]
_LEVEL = [0.08, 0.08, 0.2, 0.6, 1.0, 1.0, 0.8, 1.0, 1.0, 0.6, 0.25, 0.12, 0.08]


def business_weight(epoch_ms: np.ndarray, utc_offset_h: float = 1.0) -> np.ndarray:
    """Relative activity (0..1] at each instant: office hours 1.0, nights ~0.1, weekends x0.3."""
    local_h = epoch_ms / 3_600_000 + utc_offset_h
    level = np.interp(local_h % 24, _HOURS, _LEVEL)
    weekday = (np.floor(local_h / 24).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return np.where(weekday >= 5, level * 0.3, level)


@dataclass
class Gen:
    """Generation context: random source, payloads, time window, and the packets made so far."""

    rng: np.random.Generator
    table: PayloadTable
    start_ms: int
    duration_s: float
    parts: list[Packets] = field(default_factory=list)

    @property
    def start_ns(self) -> int:
        return self.start_ms * 1_000_000

    def arrivals(self, rate_per_s: float, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        """Sorted session start times (ns since the epoch, whole microseconds) within [lo, hi) of the run."""
        span_s = (hi - lo) * self.duration_s
        n = int(self.rng.poisson(max(rate_per_s, 0.0) * span_s))
        offset_s = np.sort(self.rng.uniform(lo * self.duration_s, hi * self.duration_s, n))
        keep = self.rng.random(n) < business_weight(self.start_ms + offset_s * 1000)
        return self.start_ns + np.round(offset_s[keep] * 1e6).astype(np.int64) * 1000

    def ports(self, n: int, windows: bool = True) -> np.ndarray:
        lo, hi = (49152, 65535) if windows else (32768, 60999)
        return self.rng.integers(lo, hi + 1, size=n)

    def tcp(self, template: Template, t0_ns: ArrayLike, client: ArrayLike, server: ArrayLike,
            sport: ArrayLike, dport: ArrayLike, rtt_ms: ArrayLike, payloads: Mapping[str, ArrayLike],
            ttl_c: ArrayLike = 128, ttl_s: ArrayLike = 64) -> None:
        """Instantiate ``template`` for every session given, with random initial sequence numbers."""
        n = np.shape(t0_ns)[0]
        s = Sessions.make(t0_ns, client, server, sport, dport, rtt_ms,
                          isn_c=self.rng.integers(0, 1 << 32, n), isn_s=self.rng.integers(0, 1 << 32, n),
                          ttl_c=ttl_c, ttl_s=ttl_s, payloads=payloads)
        self.parts.append(instantiate(template, s, self.rng, self.table.lengths()))

    def by_variant(self, n: int, probs: list[float]) -> np.ndarray:
        return self.rng.choice(len(probs), size=n, p=np.asarray(probs) / sum(probs))

    def fill(self, lo: int, hi: int, n: int, prefix: bytes = b"") -> np.ndarray:
        return self.table.fillers(self.rng.integers(lo, hi + 1, size=n), prefix)

    def add_all(self, ids: Iterable[bytes]) -> np.ndarray:
        return np.array([self.table.add(b) for b in ids], dtype=np.int32)


_HTTPS_SEGMENTS, _HTTPS_PROBS = (1, 3, 8, 20), (0.35, 0.35, 0.2, 0.1)


def https_sessions(g: Gen, t0: np.ndarray, client: np.ndarray, server: np.ndarray, sport: np.ndarray,
                   rtt: np.ndarray, names: list[str], ttl_c: ArrayLike = 128, ttl_s: ArrayLike = 64,
                   dport: int = 443) -> None:
    """TLS sessions to ``server``; ``names`` holds each session's SNI."""
    n = len(t0)
    nonce = g.rng.integers(0, 1 << 62, size=n)
    hello = g.add_all(tls_client_hello(name, str(k)) for name, k in zip(names, nonce))
    flight = g.add_all(tls_server_flight(int(length), str(k))
                       for k, length in zip(nonce, g.rng.integers(1200, 1449, size=n)))
    cols = {"hello": hello, "sflight": flight, "cert": g.fill(600, 1448, n),
            "req": g.fill(90, 900, n, b"\x17\x03\x03"), "full": g.fill(1448, 1448, n),
            "last": g.fill(60, 1448, n)}
    variant = g.by_variant(n, list(_HTTPS_PROBS))
    for v, segments in enumerate(_HTTPS_SEGMENTS):
        sel = variant == v
        g.tcp(tpl.https(segments), t0[sel], client[sel], server[sel], sport[sel], dport, rtt[sel],
              {k: c[sel] for k, c in cols.items()}, _pick(ttl_c, sel), _pick(ttl_s, sel))


def _pick(value: ArrayLike, sel: np.ndarray) -> ArrayLike:
    return value[sel] if isinstance(value, np.ndarray) else value


def dns_lookups(g: Gen, t0: np.ndarray, client: ArrayLike, resolver: ArrayLike, names: list[str],
                answers: np.ndarray, rtt: ArrayLike) -> None:
    """One UDP query and its A-record answer per lookup."""
    n = len(t0)
    txid = g.rng.integers(0, 1 << 16, size=n)
    q = g.add_all(dns_query(int(t), name) for t, name in zip(txid, names))
    a = g.add_all(dns_answer(int(t), name, int(addr).to_bytes(4, "big"))
                  for t, name, addr in zip(txid, names, answers))
    s = Sessions.make(t0, client, resolver, g.ports(n, False), 53, rtt, payloads={"q": q, "a": a},
                      ttl_c=64, ttl_s=64)
    g.parts.append(instantiate(tpl.dns(), s, g.rng, g.table.lengths()))


def outbound_browsing(g: Gen, world: World, inst: InstitutionSpec, rate: float) -> None:
    t0 = g.arrivals(rate)
    n = len(t0)
    weights = np.array([w for _, _, w in SITES])
    site = g.rng.choice(len(SITES), size=n, p=weights / weights.sum())
    client = g.rng.choice(inst.workstations(), size=n)
    server = np.array([site_address(int(i)) for i in site], dtype=np.uint32)
    rtt = (8 + (site * 7) % 40) * g.rng.uniform(0.9, 1.3, size=n)
    names = [SITES[int(i)][0] for i in site]
    lookup = g.rng.random(n) < 0.7
    miss = lookup & (g.rng.random(n) < 0.4)
    dns_t0 = t0 - g.rng.integers(20, 400, size=n) * 100_000
    dns_rtt = np.where(miss, 1.4 * 12 + 1, 0.4)
    sel = np.flatnonzero(lookup)
    dns_lookups(g, dns_t0[sel], client[sel], inst.resolver, [names[i] for i in sel], server[sel], dns_rtt[sel])
    sel = np.flatnonzero(miss)
    dns_lookups(g, dns_t0[sel] + 200_000, np.full(len(sel), inst.resolver, np.uint32),
                world.upstream_resolver, [names[i] for i in sel], server[sel], 12)
    tls = np.array([SITES[int(i)][1] == 443 for i in site], dtype=bool)
    idx = np.flatnonzero(tls)
    https_sessions(g, t0[idx], client[idx], server[idx], g.ports(len(idx)), rtt[idx],
                   [names[i] for i in idx], ttl_s=g.rng.integers(44, 58, size=len(idx)))
    idx = np.flatnonzero(~tls)
    req = g.add_all(http_request(names[i], "/MFEwTzBNMEswSTAJBgUrDgMCGgUA") for i in idx)
    g.tcp(tpl.http(1), t0[idx], client[idx], server[idx], g.ports(len(idx)), 80, rtt[idx],
          {"req": req, "resp": g.fill(400, 1400, len(idx), b"HTTP/1.1 200 OK\r\n")},
          ttl_s=g.rng.integers(44, 58, size=len(idx)))


def _outside_clients(g: Gen, n: int) -> np.ndarray:
    return (ip("198.18.0.0") + g.rng.integers(256, 65536 - 256, size=n)).astype(np.uint32)


def public_web(g: Gen, inst: InstitutionSpec, rate: float) -> None:
    t0 = g.arrivals(rate)
    n = len(t0)
    client = _outside_clients(g, n)
    rtt = g.rng.uniform(12, 90, size=n)
    ttl = np.where(g.rng.random(n) < 0.6, 128, 64) - g.rng.integers(8, 20, size=n)
    tls = g.rng.random(n) < 0.85
    idx = np.flatnonzero(tls)
    https_sessions(g, t0[idx], client[idx], np.full(len(idx), inst.web, np.uint32), g.ports(len(idx)),
                   rtt[idx], [f"www.{inst.domain}"] * len(idx), ttl_c=ttl[idx])
    idx = np.flatnonzero(~tls)
    req = g.table.add(http_request(f"www.{inst.domain}"))
    resp = g.table.add(http_response("301 Moved Permanently", f"https://www.{inst.domain}/"))
    g.tcp(tpl.http(1), t0[idx], client[idx], inst.web, g.ports(len(idx)), 80, rtt[idx],
          {"req": req, "resp": resp}, ttl_c=ttl[idx])


_INTERNAL = ((389, 90, 400, 100, 1400), (1433, 120, 600, 200, 1448), (445, 150, 500, 100, 1448),
             (5432, 80, 500, 100, 1448), (8443, 200, 900, 300, 1448))


def internal_services(g: Gen, inst: InstitutionSpec, rate: float) -> None:
    t0 = g.arrivals(rate)
    n = len(t0)
    client = g.rng.choice(inst.workstations(), size=n)
    server = g.rng.choice(inst.app_servers(), size=n)
    service = g.rng.integers(0, len(_INTERNAL), size=n)
    rounds = np.array([1, 3, 6])[g.by_variant(n, [0.5, 0.35, 0.15])]
    for kind, (port, qlo, qhi, rlo, rhi) in enumerate(_INTERNAL):
        for r in (1, 3, 6):
            sel = (service == kind) & (rounds == r)
            m = int(sel.sum())
            g.tcp(tpl.request_response(r), t0[sel], client[sel], server[sel], g.ports(m), port,
                  g.rng.uniform(0.2, 0.8, size=m), {"req": g.fill(qlo, qhi, m), "resp": g.fill(rlo, rhi, m)})


def _smtp_payloads(g: Gen, inst: InstitutionSpec, n: int) -> dict:
    text = {"banner": f"220 mx.{inst.domain} ESMTP Postfix\r\n", "ehlo": "EHLO relay.mailhost.example\r\n",
            "ehlo_ok": f"250-mx.{inst.domain}\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250 8BITMIME\r\n",
            "from": "MAIL FROM:<newsletter@mailhost.example>\r\n", "ok": "250 2.1.0 Ok\r\n",
            "rcpt": f"RCPT TO:<info@{inst.domain}>\r\n", "data": "DATA\r\n",
            "go": "354 End data with <CR><LF>.<CR><LF>\r\n", "queued": "250 2.0.0 Ok: queued\r\n",
            "quit": "QUIT\r\n", "bye": "221 2.0.0 Bye\r\n"}
    cols: dict[str, Any] = {k: g.table.add(v.encode()) for k, v in text.items()}
    cols["body"] = g.fill(800, 1448, n, b"Subject: ")
    return cols


def mail_and_dns(g: Gen, inst: InstitutionSpec, rate: float) -> None:
    """Mail relays delivering to the mail server; outside resolvers asking the public DNS server."""
    t0 = g.arrivals(rate * 0.08)
    n = len(t0)
    relays = (ip("198.19.100.0") + g.rng.integers(1, 40, size=n)).astype(np.uint32)
    g.tcp(tpl.smtp(), t0, relays, inst.mail, g.ports(n, False), 25, g.rng.uniform(10, 60, size=n),
          _smtp_payloads(g, inst, n), ttl_c=64 - g.rng.integers(6, 18, size=n))
    t0 = g.arrivals(rate * 0.3)
    n = len(t0)
    hosts = {f"www.{inst.domain}": inst.web, f"mx.{inst.domain}": inst.mail, inst.domain: inst.web,
             f"vpn.{inst.domain}": inst.bastion}
    which = g.rng.integers(0, len(hosts), size=n)
    names, answers = [list(hosts)[i] for i in which], np.array(list(hosts.values()), np.uint32)[which]
    resolvers = (ip("198.19.53.0") + g.rng.integers(1, 30, size=n)).astype(np.uint32)
    dns_lookups(g, t0, resolvers, inst.dns, names, answers, g.rng.uniform(10, 50, size=n))


def admin_ssh(g: Gen, inst: InstitutionSpec) -> None:
    """One administrator logs in to the bastion from home and types for a while."""
    t0 = g.start_ns + int(g.rng.uniform(0.05, 0.5) * g.duration_s * 1e6) * 1000
    admin = ip("198.18.200.10") + inst.index
    cols = {"sbanner": g.table.add(ssh_banner("OpenSSH_8.9p1 Ubuntu-3ubuntu0.10")),
            "cbanner": g.table.add(ssh_banner("OpenSSH_9.6")),
            "ckex": g.table.add(ssh_kexinit("admin-c", 1500)), "skex": g.table.add(ssh_kexinit("admin-s", 1080)),
            "cdh": g.table.filler(48), "sdh": g.table.filler(564), "cnew": g.table.filler(64),
            "snew": g.table.filler(52), "auth": g.table.filler(132), "authok": g.table.filler(36),
            "key": g.table.filler(36), "echo": g.table.filler(36)}
    g.tcp(tpl.ssh_interactive(30), [t0], admin, inst.bastion, g.ports(1, False), 22, 25.0, cols, ttl_c=52)


def partner_api(g: Gen, world: World, rate: float) -> None:
    """Institutions' gateways calling payment institutions' APIs (both taps see these)."""
    for payer in world.institutions:
        if payer.subsector != "payment":
            continue
        for caller in world.institutions:
            if caller.id == payer.id:
                continue
            t0 = g.arrivals(rate * caller.size)
            n = len(t0)
            https_sessions(g, t0, np.full(n, caller.gateway, np.uint32), np.full(n, payer.api, np.uint32),
                           g.ports(n, False), g.rng.uniform(4, 9, size=n), [f"api.{payer.domain}"] * n,
                           ttl_c=58, ttl_s=58)


#: Benign sessions per second for an institution of size 1.0 at scale 1.0, in office hours.
RATES = {"browsing": 0.8, "public_web": 0.45, "internal": 0.6, "mail_dns": 1.0, "partner": 0.12}


def benign_traffic(g: Gen, world: World, scale: float = 1.0) -> None:
    """Add every institution's background traffic to ``g.parts``."""
    for inst in world.institutions:
        k = scale * inst.size
        outbound_browsing(g, world, inst, RATES["browsing"] * k)
        public_web(g, inst, RATES["public_web"] * k)
        internal_services(g, inst, RATES["internal"] * k)
        mail_and_dns(g, inst, RATES["mail_dns"] * k)
        admin_ssh(g, inst)
    partner_api(g, world, RATES["partner"] * scale)
