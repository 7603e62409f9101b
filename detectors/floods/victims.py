"""What the flood detectors share about a victim: the members new to its bin, its top sources, its alert.

A flood detector totals what arrives at one victim (institution, destination address) per bin;
:func:`new_in_bin` counts the distinct sources (or reflectors) new to each victim's open bin,
:func:`top_sources` names the sources that sent the victim the most flows, and
:func:`victim_alert` builds the alert about the victim (entity and target: the victim) from a
:meth:`~finsa.detectors.base.WindowDeduper.claim_victim` claim and the margin over the threshold.

>>> from finsa.wire import FLOW
>>> from finsa.detectors.base import Detector, WindowDeduper
>>> from finsa.detectors.features import frame_of
>>> frame = frame_of(FLOW.make_batch({"src_ip": ["198.51.100.7", "198.51.100.8", "198.51.100.8"],
...     "dst_ip": ["10.1.0.9"] * 3, "first_seen_ms": [1_000, 1_500, 2_000], "last_seen_ms": [1_000, 1_500, 2_000],
...     "flow_id": [1, 2, 3], "institution_id": ["bank-a"] * 3}))
>>> mine = np.arange(3)
>>> top_sources(frame, mine)
['198.51.100.8', '198.51.100.7']
>>> claimed = WindowDeduper(60_000).claim_victim(frame, mine)
>>> alert = victim_alert(Detector(), frame, mine, claimed, 2.0, {"top_sources": top_sources(frame, mine)})
>>> alert["entity"], alert["entity_kind"], alert["target"], alert["time_ms"], alert["first_seen_ms"], alert["severity"]
('10.1.0.9', 'dst_ip', '10.1.0.9', 2000, 1000, 3)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, make_alert, severity_from_margin
from finsa.detectors.features import FlowFrame, KeyedTable, group, mix64
from finsa.detectors.state import unique, unique_first
from finsa.detectors.netsets import NetworkSet
from finsa.wire import ips_to_strings

__all__ = ["GROUP_ADDRESSES", "SeenInBins", "new_in_bin", "top_sources", "victim_alert"]

#: Multicast and broadcast destinations: never a flood's victim. One set for every flood
#: detector, so they share its answer for a batch (see :meth:`NetworkSet.match`).
GROUP_ADDRESSES = NetworkSet(["224.0.0.0/4", "255.255.255.255/32", "ff00::/8"])


class SeenInBins:
    """The (group key, bin, member) hashes :func:`new_in_bin` already counted, one key set per bin:
    dropping the old bins drops whole sets (no table of every bin to compact and re-index).

    >>> seen = SeenInBins()
    >>> seen.add(np.array([5, 7], np.uint64), np.array([1.0, 2.0])); len(seen)
    2
    >>> seen.found(np.array([5, 7, 9], np.uint64), np.array([1.0, 1.0, 2.0])).tolist()
    [True, False, False]
    """

    def __init__(self) -> None:
        self.bins: dict[float, KeyedTable] = {}

    @classmethod
    def of(cls, seen: "SeenInBins | KeyedTable | None") -> "SeenInBins":
        """``seen`` itself, or a new set (from a table of keys with a ``bin`` column: a detector
        pickled before the sets)."""
        if isinstance(seen, SeenInBins):
            return seen
        out = cls()
        if seen is not None and len(seen):
            out.add(seen.keys, seen.cols["bin"])
        return out

    def __len__(self) -> int:
        return sum(len(t) for t in self.bins.values())

    def _each_bin(self, bins: np.ndarray) -> list[tuple[float, np.ndarray]]:
        if len(bins) and (bins == bins[0]).all():
            return [(float(bins[0]), np.arange(len(bins)))]
        return [(float(b), np.flatnonzero(bins == b)) for b in unique(bins)]

    def found(self, keys: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """Which ``keys`` (unique) were added in their bin."""
        out = np.zeros(len(keys), dtype=bool)
        for b, rows in self._each_bin(bins):
            table = self.bins.get(b)
            if table is not None:
                out[rows] = table.lookup(keys[rows])[1]
        return out

    def add(self, keys: np.ndarray, bins: np.ndarray) -> None:
        """Add ``keys`` (unique, none of them added in its bin yet)."""
        for b, rows in self._each_bin(bins):
            self.bins.setdefault(b, KeyedTable(())).insert_new(keys[rows])

    def keep_newest(self, n_bins: int) -> None:
        """Forget every bin but the ``n_bins`` newest (by number)."""
        newest = max(self.bins)
        self.bins = {b: t for b, t in self.bins.items() if b >= newest - (n_bins - 1)}


def new_in_bin(seen: SeenInBins, keys: np.ndarray, owner: np.ndarray, bins: np.ndarray, member: np.ndarray,
               max_entries: int) -> np.ndarray:
    """Per group: how many ``member`` values (e.g. sources) are new to the group's bin.

    ``keys`` (the groups' keys), ``owner`` (group index per row), ``bins`` (each group's bin) and
    ``member`` (a uint64 per row). ``seen`` remembers (group key, bin, member) hashes; past
    ``max_entries`` only the two newest bins are kept.
    """
    n_groups = len(keys)
    key = mix64(keys[owner], bins[owner].astype(np.int64), member)
    uniq, first, _, _ = unique_first(key)
    uniq_bins = bins[owner[first]]
    found = seen.found(uniq, uniq_bins)
    if (~found).any():
        seen.add(uniq[~found], uniq_bins[~found])
    if len(seen) > max_entries:
        seen.keep_newest(2)
    return np.bincount(owner[first[~found]], minlength=n_groups).astype(np.float64)


def top_sources(frame: FlowFrame, mine: np.ndarray, n: int = 5) -> list[str]:
    """The ``n`` sources of the most flows among rows ``mine`` (ties: in order of first flow)."""
    sg = group(frame.src_h[mine])
    top = mine[sg.first[np.argsort(-sg.count, kind="stable")[:n]]]
    return ips_to_strings(frame.cols["src_ip"][top])


def victim_alert(detector: Detector, frame: FlowFrame, mine: np.ndarray, claimed: tuple[str, str, int],
                 margin: float, feats: dict[str, Any]) -> dict[str, Any]:
    """The alert of ``detector`` about the victim of flows ``mine``, ``claimed`` (institution,
    victim, time_ms) from :meth:`~finsa.detectors.base.WindowDeduper.claim_victim`; severity and
    confidence grow with ``margin`` (the bin's total over its threshold)."""
    inst, victim, time_ms = claimed
    return make_alert(
        detector=detector.name, technique=detector.technique, institution_id=inst, entity=victim,
        entity_kind="dst_ip", target=victim, time_ms=time_ms, first_seen_ms=int(frame.t_ms[mine].min()),
        window_ms=detector.window_ms, severity=severity_from_margin(margin), score=margin,
        confidence=1.0 - math.exp(-2.0 * margin), features=feats, flow_ids=frame.cols["flow_id"][mine[:10]])
