"""Intrusion attacks of the scenario: web attacks, lateral movement, data exfiltration.

- ``web_attack`` (T1190): one outside host sends SQL injection and path traversal requests to
  an institution's public web server over plain HTTP (port 80, so the URI is visible), one
  TCP connection per request, like sqlmap or a scanner without keep-alive.
- ``lateral_movement`` (T1021): a compromised workstation opens SMB (445) to most hosts of its
  network, RDP (3389) and SSH (22) to the application servers; some hosts refuse (reset).
  ``attacker`` is that internal workstation; every host it reached or tried is a victim.
- ``exfiltration`` (T1048): a workstation uploads about 15 MB over TLS to an outside host in a
  few parallel sessions.

>>> [u for u in WEB_ATTACK_URIS if "passwd" in u][:1]
['/../../../../etc/passwd']
"""

from __future__ import annotations

import numpy as np

from finsa.scenario import templates as tpl
from finsa.scenario.attacks import entry, victim, window_ns
from finsa.scenario.packets import Packets
from finsa.scenario.payloads import http_request, http_response, tls_client_hello, tls_server_flight
from finsa.scenario.traffic import Gen
from finsa.scenario.world import World

__all__ = ["SCHEDULE", "WEB_ATTACK_URIS", "web_attack", "lateral_movement", "exfiltration"]

SCHEDULE = {"web_attack": (0.50, 0.72), "lateral_movement": (0.25, 0.60), "exfiltration": (0.30, 0.70)}
WEB_TARGET, LATERAL, EXFIL = "bank-a", ("bank-b", 23), ("ins-a", 64)
EXFIL_NAME = "upload.filedrop-share.example"

#: What the web attacker asks for: SQL injection (plain and URL-encoded) and path traversal.
WEB_ATTACK_URIS = (
    "/login.php?user=admin%27--&pass=x",
    "/products.php?id=1%27%20OR%20%271%27%3D%271",
    "/products.php?id=1%20UNION%20SELECT%20username,password%20FROM%20users--",
    "/products.php?id=1'%20AND%20SLEEP(5)--",
    "/search?q=%27%20UNION%20ALL%20SELECT%20NULL,NULL,version()--",
    "/news.php?id=-1+union+select+1,2,concat(user(),0x3a,database())--",
    "/account?id=1;DROP%20TABLE%20accounts--",
    "/rates.php?cur=EUR'%20OR%201=1%23",
    "/../../../../etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/download?file=../../../../windows/win.ini",
    "/images/%2e%2e/%2e%2e/%2e%2e/etc/shadow",
    "/cgi-bin/..%252f..%252f..%252fetc/passwd",
    "/index.php?page=....//....//....//etc/passwd",
)
_WEB_STATUS = ("200 OK", "500 Internal Server Error", "403 Forbidden", "404 Not Found", "400 Bad Request")


def web_attack(g: Gen, world: World, requests: int = 48) -> dict:
    inst = world.by_id(WEB_TARGET)
    t_lo, t_hi = window_ns(g, *SCHEDULE["web_attack"])
    t0 = t_lo + np.sort(g.rng.integers(0, int((t_hi - t_lo) * 0.95) // 1000, size=requests)) * 1000
    uris = [WEB_ATTACK_URIS[k % len(WEB_ATTACK_URIS)] for k in g.rng.permutation(requests)]
    agents = ["sqlmap/1.7.2#stable (https://sqlmap.org)" if "passwd" not in u and "win.ini" not in u
              and "shadow" not in u else "Mozilla/5.00 (Nikto/2.5.0)" for u in uris]
    req = g.add_all(http_request(f"www.{inst.domain}", u, agent) for u, agent in zip(uris, agents))
    status = g.rng.choice(len(_WEB_STATUS), size=requests, p=[0.3, 0.25, 0.15, 0.2, 0.1])
    resp = g.add_all(http_response(_WEB_STATUS[int(k)], body_bytes=int(b))
                     for k, b in zip(status, g.rng.integers(150, 900, size=requests)))
    g.tcp(tpl.http(1), t0, world.web_attacker, inst.web, g.ports(requests), 80,
          g.rng.uniform(30, 40, size=requests), {"req": req, "resp": resp}, ttl_c=51)
    return entry("web_attack", world.web_attacker, [victim(g.parts[-1], inst.web, inst.id)])


def _lateral_targets(g: Gen, world: World) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(attacker, target, port, refused) of every attempt, in a random order."""
    inst_id, k = LATERAL
    inst = world.by_id(inst_id)
    stations, servers = inst.workstations(), inst.app_servers()
    attacker = int(stations[k])
    peers = g.rng.choice(np.delete(stations, k), size=24, replace=False)
    hosts = np.concatenate([peers, servers, servers, servers[:3]])
    ports = np.concatenate([np.full(len(peers) + len(servers), 445), np.full(len(servers), 3389),
                            np.full(3, 22)])
    refused = g.rng.random(len(hosts)) < np.where(ports == 445, 0.25, np.where(ports == 3389, 0.5, 0.0))
    order = g.rng.permutation(len(hosts))
    return attacker, hosts[order], ports[order], refused[order]


def lateral_movement(g: Gen, world: World) -> dict:
    inst = world.by_id(LATERAL[0])
    attacker, hosts, ports, refused = _lateral_targets(g, world)
    t_lo, t_hi = window_ns(g, *SCHEDULE["lateral_movement"])
    n = len(hosts)
    t0 = t_lo + np.sort(g.rng.integers(0, int((t_hi - t_lo) * 0.9) // 1000, size=n)) * 1000
    rtt = g.rng.uniform(0.3, 0.9, size=n)
    sport = g.ports(n)
    parts = []
    g.tcp(tpl.scan_closed(), t0[refused], attacker, hosts[refused], sport[refused], ports[refused], rtt[refused], {})
    parts.append(g.parts[-1])
    ok = ~refused
    m = int(ok.sum())
    g.tcp(tpl.request_response(3), t0[ok], attacker, hosts[ok], sport[ok], ports[ok], rtt[ok],
          {"req": g.fill(120, 480, m), "resp": g.fill(90, 400, m)})
    parts.append(g.parts[-1])
    done = Packets.concat(parts)
    victims = [victim(done, int(h), inst.id) for h in dict.fromkeys(hosts.tolist())]
    victims.sort(key=lambda v: (v["start_ms"], v["address"]))
    return entry("lateral_movement", attacker, victims)


def exfiltration(g: Gen, world: World, total_bytes: int = 15_000_000, sessions: int = 6) -> dict:
    inst_id, k = EXFIL
    inst = world.by_id(inst_id)
    host = int(inst.workstations()[k])
    t_lo, t_hi = window_ns(g, *SCHEDULE["exfiltration"])
    segments = max(1, total_bytes // sessions // 1448)
    t0 = t_lo + np.sort(g.rng.integers(0, int((t_hi - t_lo) * 0.55) // 1000, size=sessions)) * 1000
    nonce = g.rng.integers(0, 1 << 62, size=sessions)
    cols = {"hello": g.add_all(tls_client_hello(EXFIL_NAME, f"x/{k}") for k in nonce),
            "sflight": g.add_all(tls_server_flight(1400, f"x/{k}") for k in nonce),
            "cert": g.fill(900, 1448, sessions), "full": g.fill(1448, 1448, sessions),
            "last": g.fill(200, 1448, sessions, b"\x17\x03\x03"), "resp": g.fill(60, 120, sessions, b"\x17\x03\x03")}
    g.tcp(tpl.upload(segments), t0, host, world.exfil_drop, g.ports(sessions), 443,
          g.rng.uniform(8, 10, size=sessions), cols, ttl_s=49)
    return entry("exfiltration", world.exfil_drop, [victim(g.parts[-1], host, inst.id)])
