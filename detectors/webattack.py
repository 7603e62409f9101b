"""Web application attacks visible in HTTP hints (MITRE T1190): a small signature layer.

Every request of a flow (FLOW v2's ``http_requests`` list, else the first-request hint columns)
(``http_method``, ``http_uri``; ``http_host`` for log4shell) is percent-decoded repeatedly, up to
four times (``%25252e`` ... ``%2e`` is ``.``), ``+`` read as a space,
lower-cased, and matched against a few classes of signatures:

=============  ========  =============================================================
class          severity  signatures
=============  ========  =============================================================
log4shell      5         ``${jndi:``, ``${${`` / ``${lower:`` obfuscation
cmd_injection  4         ``;cat /``, ``|wget``, ``&& curl``, ``$(id)``, backticks, ``;id;``
sql_injection  4         ``union select``, ``' or 1=1``, ``sleep(``, ``information_schema``;
                         blind/boolean ``and substring(@@version,1,1)=5``, ``and 1=1--``,
                         ``' and 'a'='a``; concatenation ``' + '``, ``' || '``, ``concat(0x``
web_shell      4         ``/c99.php``, ``/shell.aspx``, ``?cmd=whoami``
path_traversal 3         ``../``, ``..\\``, ``/etc/passwd``, ``win.ini``, ``boot.ini``
=============  ========  =============================================================

Only HTTP in clear text (or decrypted by the sensor) carries hints; HTTPS requests are invisible.
One alert per (institution, client) and window, for its most severe class; the evidence holds
the matched classes, counts, the Host header and the first URI of the worst class (truncated
to 200 characters). entity = the client (``src_ip``), target = ``server:port``.

>>> from finsa.wire import FLOW
>>> b = FLOW.make_batch({"src_ip": ["203.0.113.9"] * 2, "dst_ip": ["10.1.0.80"] * 2,
...     "dst_port": [80] * 2, "protocol": [6] * 2, "http_method": ["GET"] * 2,
...     "http_uri": ["/index.php?id=1%20UNION%20SELECT%20user,pass%20FROM%20users", "/"],
...     "first_seen_ms": [1_000, 2_000], "last_seen_ms": [1_500, 2_500], "flow_id": [1, 2],
...     "institution_id": ["bank-a"] * 2})
>>> [(a["entity"], a["target"], a["severity"]) for a in WebAttackDetector().process(b)]
[('203.0.113.9', '10.1.0.80:80', 4)]
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, unquote_plus

import numpy as np

from finsa.detectors.base import Detector, WindowDeduper, make_alert, service_of
from finsa.wire import RecordBatch, split_list

__all__ = ["WebAttackDetector", "SIGNATURES", "classify"]

#: Class -> (severity, compiled pattern over the decoded, lower-cased request).
SIGNATURES: dict[str, tuple[int, re.Pattern]] = {
    "log4shell": (5, re.compile(r"\$\{\s*(?:jndi\s*:|\$\{|(?:lower|upper|env|sys|::-)[:}])")),
    "cmd_injection": (4, re.compile(
        r"(?:[;|`]|\|\||&&|\$\()\s*(?:cat|wget|curl|nc|ncat|bash|sh|id|whoami|uname|ping|chmod|rm|python\d?|perl)"
        r"(?:\s|[;|&`)$]|$)")),
    "sql_injection": (4, re.compile(
        r"union(?:\s|/\*.*?\*/)+(?:all(?:\s|/\*.*?\*/)+)?select|'\s*(?:or|and)\s+'?\d+'?\s*=\s*'?\d+"
        r"|\b(?:sleep|benchmark|pg_sleep)\s*\(\s*\d|waitfor\s+delay|information_schema|\bxp_cmdshell"
        r"|'\s*;\s*(?:drop|insert|update|delete)\s|\bselect\b.{1,60}\bfrom\b.{1,60}\bwhere\b.{0,40}'"
        # blind and boolean: and substring(@@version,1,1)=5, and ascii(mid(...)), and 1=1, and 'a'='a
        r"|\b(?:and|or)\s+\(?\s*(?:substring|substr|mid|ascii|ord|length|char|if)\s*\("
        r"|@@(?:version|datadir|hostname|servername)|\b(?:and|or)\s+(\d+)\s*=\s*\1\b"
        r"|'\s*(?:and|or)\s+'(\w+)'\s*=\s*'\2|\b(?:and|or)\s+\d+\s*=\s*\d+\s*(?:--|#|/\*)"
        # concatenation and stacked comments: ' + ', ' || ', '||(select, concat(0x...
        r"|'\s*(?:\+|\|\|)\s*'|'\s*\|\|\s*\(|\bconcat(?:_ws)?\s*\(\s*0x|\bcast\s*\(.{1,40}\bas\s+(?:n?varchar|int)\b"
        r"|'\s*(?:--|#)\s*$|\border\s+by\s+\d+\s*(?:--|#)")),
    "web_shell": (4, re.compile(
        r"/(?:c99|r57|wso|b374k|c100|webshell|cmdasp|shell|cmd)\.(?:php\d?|aspx?|jspx?|cfm)\b"
        r"|[?&](?:cmd|exec|command|execute)=\s*(?:[a-z]+%20|[a-z]+\s)?(?:cat|id|whoami|uname|dir|ls|net|ipconfig|ifconfig|wget|curl)\b")),
    "path_traversal": (3, re.compile(r"(?:\.\.[/\\]){1,}|/etc/(?:passwd|shadow|hosts)\b|\bwin\.ini\b|\bboot\.ini\b")),
}


def _decode(text: str) -> str:
    """Percent-decoded until stable (at most four times); ``+`` is a space only in the first pass,
    so an encoded ``%2B`` stays a plus sign.

    >>> _decode("/p?a=x%27%20%2B%20%27y+z"), _decode("%25252e%25252e%25252f")
    ("/p?a=x' + 'y z", '../')
    """
    out = text
    for i in range(4):
        decoded = (unquote_plus if i == 0 else unquote)(out, errors="replace")
        if decoded == out:
            break
        out = decoded
    return out.lower()


def classify(method: str, uri: str, host: str = "") -> list[str]:
    """Signature classes matched by one request, most severe first.

    >>> classify("GET", "/a?x=%24%7Bjndi%3Aldap%3A%2F%2Fe.example%2Fa%7D")
    ['log4shell']
    >>> classify("GET", "/static/../../etc/passwd"), classify("GET", "/search?q=union+station")
    (['path_traversal'], [])
    """
    text = f"{_decode(uri)} {_decode(host)} {method.lower()}"
    return [name for name, (_, pattern) in SIGNATURES.items() if pattern.search(text)]


class WebAttackDetector(Detector):
    """Signature matches in HTTP request hints, one alert per client and window."""

    name = "webattack"
    technique = "T1190"

    def __init__(self, *, max_uri_chars: int = 8192, max_cache: int = 100_000,
                 window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.max_uri_chars, self.max_cache = max_uri_chars, max_cache
        self._check(max_uri_chars=(max_uri_chars, 16, 1 << 20), max_cache=(max_cache, 0, 1e8))
        self._cache: dict[tuple[str, str, str], tuple[str, ...]] | None = None
        self._dedupe: WindowDeduper | None = None

    def _classes(self, method: str, uri: str, host: str) -> tuple[str, ...]:
        key = (method, uri, host)
        hit = self._cache.get(key)
        if hit is None:
            hit = tuple(classify(method, uri[:self.max_uri_chars], host[:256]))
            if len(self._cache) >= self.max_cache:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        if self._dedupe is None:
            self._cache, self._dedupe = {}, WindowDeduper(self.window_ms)
        c = frame.cols
        rows, requests = _requests(c)
        if not len(rows):
            return []
        classes = [self._classes(str(m), str(u), str(h)) for m, u, h in requests]
        hit = np.array([bool(x) for x in classes])
        if not hit.any():
            return []
        rows, classes = rows[hit], [x for x in classes if x]
        requests = [r for r, h in zip(requests, hit) if h]
        order = np.lexsort((frame.t_ms[rows], frame.src_key[rows]))
        out = []
        for start, stop in _runs(frame.src_key[rows][order]):
            idx = order[start:stop]
            alert = self._alert(frame, rows[idx], [classes[i] for i in idx], [requests[i] for i in idx])
            if alert is not None:
                out.append(alert)
        return out

    def _alert(self, frame: Any, mine: np.ndarray, classes: list[tuple[str, ...]],
               requests: list[tuple[str, str, str]]) -> dict[str, Any] | None:
        c, first = frame.cols, mine[0]
        claimed = self._dedupe.claim_source(frame, mine)
        if claimed is None:
            return None
        inst, entity, time_ms = claimed
        counts: dict[str, int] = {}
        for cls in classes:
            for name in cls:
                counts[name] = counts.get(name, 0) + 1
        worst = max(counts, key=lambda n: (SIGNATURES[n][0], counts[n]))
        method, uri, host = requests[next(i for i, cls in enumerate(classes) if worst in cls)]
        target = service_of(frame, first)
        feats = {"class": worst, "matches": counts, "requests": len(mine),
                 "distinct_servers": len(np.unique(frame.dst_h[mine])), "host": str(host)[:100],
                 "uri": str(uri)[:200], "method": str(method)[:16]}
        return make_alert(detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
                          entity_kind="src_ip", target=target, time_ms=time_ms,
                          first_seen_ms=int(frame.t_ms[mine].min()), window_ms=self.window_ms,
                          severity=SIGNATURES[worst][0], score=float(len(mine)),
                          confidence=min(1.0, 0.6 + 0.1 * len(mine)), features=feats,
                          flow_ids=c["flow_id"][mine[:10]])


def _requests(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """Every HTTP request of a batch as (flow row, (method, uri, host)): a flow's ``http_requests``
    list (FLOW v2) when it has one, else its first-request hint columns."""
    lists = cols["http_requests"]
    rows: list[int] = []
    out: list[tuple[str, str, str]] = []
    for row in np.flatnonzero((cols["http_uri"] != "") | (cols["http_host"] != "") | (lists != "")).tolist():
        items = split_list(str(lists[row]))
        if not items:
            rows.append(row)
            out.append((str(cols["http_method"][row]), str(cols["http_uri"][row]), str(cols["http_host"][row])))
        for item in items:
            method, host, uri = (item.split("\t") + ["", "", ""])[:3]
            rows.append(row)
            out.append((method, uri, host))
    return np.array(rows, dtype=np.int64), out


def _runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal consecutive keys."""
    edges = np.flatnonzero(np.diff(keys)) + 1
    bounds = np.concatenate([[0], edges, [len(keys)]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
