"""HTTP command-and-control check-ins (MITRE T1071.001) and drive-by delivery (T1189), from every
HTTP request of a flow (FLOW v2's ``http_requests``: method, host, URI, status, content type).

:class:`HttpC2Detector` (``httpc2``) scores each (client, web host) pair over a window from what
implants do and browsers rarely do, and alerts at ``min_points``:

* 2 — the host's registered domain looks machine-generated (DGA score >= 0.5), or sits under a
  dynamic-DNS provider (``dyndns_domains``), or the host is an address literal of an external
  (non-private) server;
* 2 — a request's query string identifies the machine: at least two of ``c``, ``u``, ``user``,
  ``computer``, ``host``, ``hwid``, ``guid``, ``botid``, ``mi`` ... (``MSEDGEWIN10``, ``IEUser``);
* 1 — a POST to the host after parameterised GETs (a check-in, then results sent back);
* 1 — the host is newly seen: no client of the institution asked for it before, once the
  institution's learning period (``learn_ms`` of flow time from its first HTTP request) is over
  (hosts remembered: at most ``max_hosts`` per institution).

:class:`DriveByDetector` (``driveby``) keys on a client that received a Flash or Java exploit
container (``flash_or_java`` marker) from a server and, within ``follow_ms``, a binary payload
from the same server: an executable (``exe`` marker) or ``application/octet-stream`` for a URI
that names a page (``.html``, ``.php``, ``/``): the exploit kit's payload in disguise.

entity = the web server (address), target = the client; the host name is in the evidence.

>>> from finsa.wire import FLOW
>>> b = FLOW.make_batch({"src_ip": ["10.0.2.15"], "dst_ip": ["185.56.137.138"], "dst_port": [80], "protocol": [6],
...     "http_requests": ["GET\\tdb54a845.top\\t/2014/?c=MSEDGEWIN10&u=IEUser&v=1\\t404\\ttext/html\\n"
...                       "POST\\tdb54a845.top\\t/en/?x\\t200\\ttext/html"],
...     "first_seen_ms": [1_000], "last_seen_ms": [9_000], "flow_id": [1], "institution_id": ["bank-a"]})
>>> [(a["entity"], a["target"], a["technique"]) for a in HttpC2Detector().process(b)]
[('185.56.137.138', '10.0.2.15', 'T1071.001')]
"""

from __future__ import annotations

from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from finsa.detectors.base import WindowDeduper
from finsa.detectors.dnsnames import dga_score, registered_domain
from finsa.detectors.features import FlowFrame
from finsa.detectors.netsets import NetworkSet, PRIVATE_NETWORKS
from finsa.detectors.payload.detector import PayloadDetector
from finsa.wire import ips_to_strings, split_list

__all__ = ["HttpC2Detector", "DriveByDetector", "IDENTITY_KEYS"]

#: Query keys implants use to identify the machine and user they run on.
IDENTITY_KEYS = frozenset("c u user username comp computer computername host hostname pc pcname hwid guid "
                          "uid botid bot_id machine machineid mi os_user domain".split())
_DYNDNS = ("hopto.org", "no-ip.org", "no-ip.biz", "ddns.net", "duckdns.org", "dyndns.org", "zapto.org",
           "sytes.net", "servegame.com", "myftp.biz", "freedns.afraid.org", "3utilities.com")
_PAGES = (".html", ".htm", ".php", ".asp", ".aspx", ".jsp", "/")


def requests_of(frame: FlowFrame) -> list[tuple[int, list[list[str]]]]:
    """(row, [[method, host, uri, status, content type], ...]) of the flows with HTTP requests
    (parsed once per batch: both HTTP detectors read them; read-only)."""
    memo = frame.__dict__.get("_http_requests")
    if memo is None:
        memo = frame.__dict__["_http_requests"] = _parse_requests(frame)
    return memo


def _endpoints(frame: FlowFrame, rows: list[int]) -> tuple[list[str], list[str]]:
    """Client and server address texts of flows ``rows`` (each distinct address formatted once)."""
    index = np.array(rows, dtype=np.intp)
    return ips_to_strings(frame.cols["src_ip"][index]), ips_to_strings(frame.cols["dst_ip"][index])


def _parse_requests(frame: FlowFrame) -> list[tuple[int, list[list[str]]]]:
    c = frame.cols
    out = []
    for row in np.flatnonzero((c["http_requests"] != "") | (c["http_method"] != "")).tolist():
        items = split_list(str(c["http_requests"][row]))
        reqs = [(i.split("\t") + [""] * 5)[:5] for i in items] or [
            [str(c["http_method"][row]), str(c["http_host"][row]), str(c["http_uri"][row]), str(c["http_status"][row]), ""]]
        out.append((row, reqs))
    return out


def _identity(uri: str) -> bool:
    keys = {k.lower() for k, v in parse_qsl(urlsplit(uri).query) if v}
    return len(keys & IDENTITY_KEYS) >= 2


class _HttpBase(PayloadDetector):
    """Per (institution, client, server or host) state; alerts about the server (entity), the client its target."""

    entity_kind = "dst_ip"
    base_confidence = 0.4

    def __init__(self, *, window_ms: int, seed: int) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self._state: dict[tuple[str, str, str], dict[str, Any]] | None = None

    def _start(self) -> None:
        if self._state is None:
            self._state, self._dedupe = {}, WindowDeduper(self.window_ms)

    def _trim(self, max_pairs: int) -> None:
        if len(self._state) > max_pairs:
            for k in list(self._state)[:len(self._state) // 2]:
                del self._state[k]


class HttpC2Detector(_HttpBase):
    """Check-ins to generated, dynamic-DNS or address-literal hosts that identify the machine."""

    name = "httpc2"
    technique = "T1071.001"

    def __init__(self, *, min_points: int = 4, dyndns_domains: tuple[str, ...] = _DYNDNS, max_pairs: int = 100_000,
                 learn_ms: int = 86_400_000, max_hosts: int = 200_000, window_ms: int = 3_600_000,
                 seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.min_points, self.max_pairs = min_points, max_pairs
        self.learn_ms, self.max_hosts = learn_ms, max_hosts
        self.dyndns_domains = tuple(str(d).lower() for d in dyndns_domains)
        self._check(min_points=(min_points, 1, 6), max_pairs=(max_pairs, 10, 1e8),
                    learn_ms=(learn_ms, 0, 365 * 86_400_000), max_hosts=(max_hosts, 10, 1e8))
        self._private: NetworkSet | None = None
        self._hosts: dict[str, dict[str, Any]] | None = None

    def _newly_seen(self, inst: str, host: str, t_ms: int) -> bool:
        """Whether ``host`` is new to the institution after its learning period; remembers it."""
        known = self._hosts.setdefault(inst, {"start_ms": t_ms, "hosts": {}})
        hosts = known["hosts"]
        new = host not in hosts and t_ms >= known["start_ms"] + self.learn_ms
        if host not in hosts and len(hosts) >= self.max_hosts:
            for old in list(hosts)[:len(hosts) // 10 + 1]:
                del hosts[old]
        hosts[host] = None
        return new

    def _start(self) -> None:
        super()._start()
        if self._private is None:
            self._private, self._hosts = NetworkSet(PRIVATE_NETWORKS), {}

    def _alerts(self, frame: FlowFrame) -> Iterator[dict[str, Any] | None]:
        c = frame.cols
        found = requests_of(frame)
        rows = np.array([row for row, _ in found], dtype=np.intp)
        clients, servers = _endpoints(frame, rows.tolist())
        external = (~self._private.contains(c["dst_ip"][rows])).tolist() if len(rows) else []
        insts, t_ms, flow_ids = c["institution_id"][rows].tolist(), frame.t_ms[rows].tolist(), c["flow_id"][rows].tolist()
        host_points: dict[tuple[str, bool], dict[str, int]] = {}  # pure functions of their text: once per batch
        identity: dict[str, bool] = {}
        for i, (row, reqs) in enumerate(found):
            client, server = clients[i], servers[i]
            for method, host, uri, _, _ in reqs:
                key = (str(insts[i]), client, host.lower() or server)
                st = self._state.setdefault(key, {"points": {}, "flows": [], "gets": 0})
                if (host, external[i]) not in host_points:
                    host_points[host, external[i]] = self._host_points(host, external[i])
                st["points"].update(host_points[host, external[i]])
                if host and self._newly_seen(key[0], key[2], int(t_ms[i])):
                    st["points"]["newly_seen_host"] = 1
                if uri not in identity:
                    identity[uri] = _identity(uri)
                if identity[uri]:
                    st["points"]["identity_params"] = 2
                    st["sample_uri"] = uri[:200]
                if method == "GET" and "?" in uri:
                    st["gets"] += 1
                elif method == "POST" and st["gets"]:
                    st["points"]["post_after_gets"] = 1
                st["flows"] = (st["flows"] + [int(flow_ids[i])])[-10:]
                total = sum(st["points"].values())
                if total >= self.min_points:
                    feats = {"host": key[2][:100], "points": dict(st["points"]), "client": client, "server": server,
                             "uri": st.get("sample_uri", uri[:200])}
                    yield self._emit(frame, row, server, client, feats, 3 + (total >= 5), float(total),
                                     flow_ids=st["flows"][-10:])
        self._trim(self.max_pairs)

    def _host_points(self, host: str, external: bool) -> dict[str, int]:
        name = host.lower().rsplit(":", 1)[0].strip("[]")
        if not name or name.replace(".", "").isdigit() or ":" in name:
            return {"ip_literal_host": 2} if external and name else {}
        domain = registered_domain(name)
        if any(domain == d or name.endswith("." + d) for d in self.dyndns_domains):
            return {"dynamic_dns_host": 2}
        return {"generated_domain": 2} if domain and dga_score(domain.split(".")[0]) >= 0.5 else {}


class DriveByDetector(_HttpBase):
    """A Flash/Java exploit container, then a disguised binary from the same server."""

    name = "driveby"
    technique = "T1189"

    def __init__(self, *, follow_ms: int = 300_000, max_pairs: int = 100_000, window_ms: int = 600_000,
                 seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.follow_ms, self.max_pairs = follow_ms, max_pairs
        self._check(follow_ms=(follow_ms, 1_000, 3_600_000), max_pairs=(max_pairs, 10, 1e8))

    def _alerts(self, frame: FlowFrame) -> Iterator[dict[str, Any] | None]:
        c = frame.cols
        found = requests_of(frame)
        rows = [row for row, _ in found]
        endpoints = dict(zip(rows, zip(*_endpoints(frame, rows))))
        for row, reqs in sorted(found, key=lambda r: int(frame.t_ms[r[0]])):
            marks = str(c["app_markers"][row])
            client, server = endpoints[row]
            key = (str(c["institution_id"][row]), client, server)
            st = self._state.setdefault(key, {"container_ms": None, "payloads": [], "flows": []})
            t = int(frame.t_ms[row])
            st["flows"] = (st["flows"] + [int(c["flow_id"][row])])[-10:]
            disguised = [r for r in reqs if r[4] == "application/octet-stream"
                         and urlsplit(r[2]).path.lower().endswith(_PAGES)]
            if disguised or "exe_from_dst" in marks:
                req = disguised[0] if disguised else reqs[-1]
                st["payloads"] = (st["payloads"] + [(t, req[1][:100], req[2][:200])])[-8:]
            if "flash_or_java_from_dst" in marks:
                st["container_ms"] = t if st["container_ms"] is None else min(st["container_ms"], t)
            # flows end in any order: a payload may be reported before the container that preceded it
            after = [p for p in st["payloads"] if st["container_ms"] is not None
                     and 0 <= p[0] - st["container_ms"] <= self.follow_ms]
            if after:
                feats = {"host": after[0][1], "client": client, "server": server, "payload_uri": after[0][2],
                         "seconds_after_container": (after[0][0] - st["container_ms"]) / 1000.0}
                yield self._emit(frame, row, server, client, feats, 4, 3.0, flow_ids=st["flows"][-10:])
        self._trim(self.max_pairs)
