"""Per-flow lists of application facts: every DNS question, every HTTP request, marker tokens.

The first-seen hints (:mod:`finsa.collectors.meter.app_hints`) keep one value per flow. The FLOW
record's list fields (``dns_queries``, ``http_requests``, ``app_markers``) keep more, bounded:
:class:`FlowLists` picks candidate packets with vectorised tests on the first payload bytes and
ports (DNS ports, HTTP request/response lines, SMB on 139/445, RDP on 3389, PE/ELF magic,
command-shell prompts, ICMP echo payloads: :mod:`finsa.collectors.meter.payload_marks`), parses
only those in Python, and files the items under the flow's key hash with their packet time and
direction. When a flow is exported, :meth:`FlowLists.columns` hands it the items that fall in its
time span (and forgets them): the meter's flow table, segmentation and fast path are untouched.

Bounds: at most ``MAX_ITEMS_PER_KEY`` items are kept per flow key (later ones counted in
``stats["dropped_items"]``) and at most ``max_keys`` keys (beyond it new keys are not tracked,
counted in ``stats["untracked_keys"]``), so hostile traffic cannot grow it without limit.

>>> fl = FlowLists()
>>> fl.add_items(np.array([7, 7], np.uint64), np.array([10, 20]), np.array([True, False]),
...              [("dns", "x.example/16"), ("mark", "shell")])
>>> cols = fl.columns(np.array([7], np.uint64), np.array([0]), np.array([30]), np.array([True]))
>>> cols["dns_queries"][0], cols["app_markers"][0]
('x.example/16', 'shell_from_dst')
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from finsa.collectors.meter.flowtable import object_column
from finsa.collectors.meter.payload_marks import packet_items
from finsa.wire import LIST_SEP, MARKER_SEP, MAX_DNS_QUERIES, MAX_HTTP_REQUESTS

__all__ = ["FlowLists", "MAX_ITEMS_PER_KEY", "complete_dns"]

#: Items kept per flow key (DNS questions, HTTP request and response lines, markers together).
MAX_ITEMS_PER_KEY = 96
#: Markers that are facts about the flow, not about one side (no ``_from_src``/``_from_dst`` suffix).
_SIDELESS = frozenset({"smb1", "smb2"})


class FlowLists:
    """Bounded per-flow-key item lists, filled from packet batches and drained at export."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self.max_keys = max_keys
        self._items: dict[int, list[tuple[int, bool, str, str]]] = {}
        self.stats = {"items": 0, "dropped_items": 0, "untracked_keys": 0}

    def __len__(self) -> int:
        return len(self._items)

    def observe(self, data, decoded, hashes: np.ndarray, dir_lo: np.ndarray, t_ms: np.ndarray,
                tried: np.ndarray | None = None) -> None:
        """Find and parse the candidate packets of a decoded batch; file their items.

        ``tried`` (per packet, its flow's hint-tried bits) lets a flow's first DNS question be
        skipped here: :meth:`complete_dns` puts it back from the first-seen hint columns.
        """
        found = packet_items(data, decoded, hashes, tried)
        if found is None:
            return
        rows, items = found
        self.add_items(hashes[rows], t_ms[rows], dir_lo[rows], items)

    def add_items(self, hashes: np.ndarray, t_ms: np.ndarray, dir_lo: np.ndarray,
                  items: Iterable[tuple[str, str]]) -> None:
        """File ``items`` ((kind, text) per row: kind dns, req, resp or mark) under their key hashes."""
        store, max_keys = self._items, self.max_keys
        added = dropped = untracked = 0
        for h, t, lo, (kind, text) in zip(hashes.tolist(), t_ms.tolist(), dir_lo.tolist(), items):
            got = store.get(h)
            if got is None:
                if len(store) >= max_keys:
                    untracked += 1
                    continue
                got = store[h] = []
            if len(got) >= MAX_ITEMS_PER_KEY:
                dropped += 1
                continue
            got.append((t, lo, kind, text))
            added += 1
        self.stats["items"] += added
        self.stats["dropped_items"] += dropped
        self.stats["untracked_keys"] += untracked

    def columns(self, hashes: np.ndarray, first_ms: np.ndarray, last_ms: np.ndarray,
                src_is_lo: np.ndarray) -> dict[str, np.ndarray]:
        """The list columns of exported flows (key hash, time span, which side sent first).

        Items of a key up to the flow's last packet are taken and forgotten; later ones stay for
        the key's next flow.
        """
        n = len(hashes)
        out = {name: object_column(n, "") for name in ("dns_queries", "http_requests", "app_markers")}
        if not self._items or not n:
            return out
        store = self._items
        known = np.sort(np.fromiter(store.keys(), dtype=np.uint64, count=len(store)))  # distinct: dict keys
        at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
        hits = np.flatnonzero(known[at] == hashes)
        dns_col, http_col, mark_col = out["dns_queries"], out["http_requests"], out["app_markers"]
        for i, h, first, last, lo in zip(hits.tolist(), hashes[hits].tolist(), first_ms[hits].tolist(),
                                         last_ms[hits].tolist(), src_is_lo[hits].tolist()):
            got = store.pop(h, None)
            if got is None:  # two flows of one key in this export: the other took the items
                continue
            if len(got) == 1 and first <= got[0][0] <= last:  # the usual case: one item, this flow's
                one = got[0]
                if one[2] == "dns":
                    dns_col[i] = one[3]
                elif one[2] != "resp":
                    dns_col[i], http_col[i], mark_col[i] = _render_one(one, bool(lo))
                continue
            if got[-1][0] <= last and got[0][0] >= first:  # every item is this flow's
                mine = got
            else:
                mine = [it for it in got if first <= it[0] <= last]
                rest = [it for it in got if not first <= it[0] <= last]
                if rest:
                    store[h] = rest
            if mine:
                dns_col[i], http_col[i], mark_col[i] = _render(mine, bool(lo))
        return out


def complete_dns(columns: dict[str, np.ndarray]) -> None:
    """Put each flow's first question (``dns_query``/``dns_qtype``) at the head of a non-empty
    ``dns_queries`` (the list then holds every question, the first included)."""
    lists = columns["dns_queries"]
    for i in np.flatnonzero(lists != "").tolist():
        first = f"{columns['dns_query'][i]}/{int(columns['dns_qtype'][i])}" if columns["dns_query"][i] else ""
        names = [first] if first else []
        names += [q for q in lists[i].split(LIST_SEP) if q != first]
        lists[i] = LIST_SEP.join(names[:MAX_DNS_QUERIES])


def _render_one(item: tuple[int, bool, str, str], src_is_lo: bool) -> tuple[str, str, str]:
    """:func:`_render` of a single item, without its general bookkeeping (the same strings).

    >>> _render_one((0, True, "req", "GET\\tbank.example\\t/"), True)
    ('', 'GET\\tbank.example\\t/\\t\\t', '')
    """
    _, lo, kind, text = item
    if kind == "dns":
        return text, "", ""
    if kind == "req":
        method, host, uri = (text.split("\t") + ["", "", ""])[:3]
        return "", "\t".join((method, host, uri, "", "")), ""
    if kind == "resp":
        return "", "", ""
    return "", "", text if text in _SIDELESS else f"{text}_from_{'src' if lo == src_is_lo else 'dst'}"


def _render(items: list[tuple[int, bool, str, str]], src_is_lo: bool) -> tuple[str, str, str]:
    """The three list strings of one flow from its items (in packet order)."""
    if len(items) == 1:  # the usual case: one question, one request or one marker
        return _render_one(items[0], src_is_lo)
    if all(it[2] == "dns" for it in items):  # the usual case: a DNS flow
        return LIST_SEP.join(list(dict.fromkeys(it[3] for it in items))[:MAX_DNS_QUERIES]), "", ""
    dns: dict[str, None] = {}
    requests: list[list[str]] = []
    responses: list[tuple[str, str]] = []
    marks: set[str] = set()
    for _, lo, kind, text in items:
        side = "src" if lo == src_is_lo else "dst"
        if kind == "dns":
            if len(dns) < MAX_DNS_QUERIES:
                dns[text] = None
        elif kind == "req":
            if len(requests) < MAX_HTTP_REQUESTS:
                method, host, uri = (text.split("\t") + ["", "", ""])[:3]
                requests.append([method, host, uri, "", ""])
        elif kind == "resp":
            status, ctype = (text.split("\t") + ["", ""])[:2]
            responses.append((status, ctype))
        else:
            marks.add(text if text in _SIDELESS else f"{text}_from_{side}")
    for req, (status, ctype) in zip(requests, responses):
        req[3], req[4] = status, ctype
    http = LIST_SEP.join("\t".join(r) for r in requests)
    return LIST_SEP.join(dns), http, MARKER_SEP.join(sorted(marks))
