"""The detector contract: inert validated hyperparameters, lazy picklable state, flow time only.

A :class:`Detector` is built from hyperparameters alone (keyword arguments with immutable
defaults, checked in the constructor, no work done); its state is built on the first batch it
sees. ``clone()`` returns a fresh untrained copy with the same hyperparameters, randomness comes
from ``seed`` only, and the whole object pickles (the stream layer checkpoints it).

``process(flows)`` takes a :data:`finsa.wire.FLOW` batch and returns alert rows: dicts with the
columns of :data:`finsa.wire.ALERT`. Detectors use **flow time** (``first_seen_ms`` /
``last_seen_ms``), never the wall clock, so a replayed capture or an offline backtest gives the
same alerts as live traffic. A batch may mix institutions: every piece of state is per
``institution_id``. An alert's id hashes (detector, institution, entity, window start), so a
redelivered batch processed from the same checkpoint repeats the same id, and
:class:`WindowDeduper` lets a detector alert at most once per entity per window.

>>> alert_id("portscan", "bank-a", "203.0.113.66", 60_000) == alert_id("portscan", "bank-a", "203.0.113.66", 60_000)
True
>>> row = make_alert(detector="portscan", technique="T1046", institution_id="bank-a",
...                  entity="203.0.113.66", entity_kind="src_ip", target="10.0.0.5",
...                  time_ms=61_000, first_seen_ms=60_500, window_ms=60_000, severity=4,
...                  score=3.5, confidence=0.9, features={"ports": 200}, flow_ids=[1, 2])
>>> row["severity"], row["evidence"]
(4, '{"features": {"ports": 200}, "flow_ids": [1, 2]}')
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
from typing import Any, Iterable, Mapping

import numpy as np

from finsa.detectors.features import FlowFrame, frame_of
from finsa.errors import FinsaError
from finsa.wire import ALERT, RecordBatch, ips_to_strings

__all__ = ["Detector", "DetectorParamError", "WindowDeduper", "alert_id", "make_alert",
           "severity_from_margin", "host_port", "service_of", "MAX_EVIDENCE_FLOWS"]

#: At most this many flow ids are cited in an alert's evidence.
MAX_EVIDENCE_FLOWS = 10


class DetectorParamError(FinsaError, ValueError):
    """A detector hyperparameter was refused (the message names it and why)."""


def alert_id(detector: str, institution_id: str, entity: str, window_start_ms: int) -> str:
    """Deterministic 32-hex-digit id of the alert for one entity in one window."""
    key = f"{detector}\x1f{institution_id}\x1f{entity}\x1f{int(window_start_ms)}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def _plain(value: Any) -> Any:
    """JSON-friendly version of a feature value (numpy scalars, non-finite floats)."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def make_alert(*, detector: str, technique: str, institution_id: str, entity: str,
               entity_kind: str, target: str, time_ms: int, first_seen_ms: int, window_ms: int,
               severity: int, score: float, confidence: float, features: Mapping[str, Any],
               flow_ids: Iterable[int] = ()) -> dict[str, Any]:
    """One alert row with every ALERT column; ids, ranges and evidence JSON handled here."""
    window_start_ms = (int(time_ms) // window_ms) * window_ms
    sample = list(dict.fromkeys(int(f) for f in flow_ids))[:MAX_EVIDENCE_FLOWS]
    evidence = json.dumps({"features": _plain(dict(features)), "flow_ids": sample},
                          separators=(", ", ": "), allow_nan=False)
    score = float(score)
    row = {
        "alert_id": alert_id(detector, institution_id, entity, window_start_ms),
        "time_ms": int(time_ms),
        "first_seen_ms": int(min(first_seen_ms, time_ms)),
        "institution_id": str(institution_id),
        "entity": str(entity),
        "entity_kind": entity_kind,
        "target": str(target),
        "detector": detector,
        "technique": technique,
        "severity": int(min(5, max(1, severity))),
        "score": score if math.isfinite(score) else 0.0,
        "confidence": float(min(1.0, max(0.0, confidence))),
        "evidence": evidence,
    }
    assert set(row) == set(ALERT.names)
    return row


def host_port(address: str, port: int) -> str:
    """An alert target ``address:port`` (an IPv6 address in brackets).

    >>> host_port("10.1.0.22", 22), host_port("2001:db8::80", 443)
    ('10.1.0.22:22', '[2001:db8::80]:443')
    """
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def service_of(frame: Any, row: int) -> str:
    """``destination:port`` of flow ``row`` of a :class:`~finsa.detectors.features.FlowFrame`."""
    cols = frame.cols
    return host_port(ips_to_strings(cols["dst_ip"][row:row + 1])[0], int(cols["dst_port"][row]))


def severity_from_margin(margin: float, steps: tuple[float, ...] = (1.0, 1.5, 2.5, 4.0)) -> int:
    """Severity 1..5 from how far a score exceeds its threshold (``margin`` = score / threshold).

    >>> severity_from_margin(1.2), severity_from_margin(10.0)
    (2, 5)
    """
    return 1 + sum(1 for s in steps if margin >= s)


class WindowDeduper:
    """Remembers which (institution, entity) already alerted in which flow-time window.

    >>> d = WindowDeduper(60_000)
    >>> d.first("bank-a", "x", 61_000), d.first("bank-a", "x", 119_000), d.first("bank-a", "x", 120_000)
    (True, False, True)
    """

    def __init__(self, window_ms: int, max_entries: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._last: dict[tuple[str, str], int] = {}

    def first(self, institution_id: str, entity: str, time_ms: int) -> bool:
        """True (and remember it) when this is the entity's first alert in the window of ``time_ms``."""
        window = int(time_ms) // self.window_ms
        key = (institution_id, entity)
        if self._last.get(key, -1) >= window:
            return False
        if len(self._last) >= self.max_entries:
            self._prune(window)
        self._last[key] = window
        return True

    def claim_source(self, frame: Any, rows: np.ndarray, span: np.ndarray | None = None) -> tuple[str, str, int] | None:
        """(institution, source address, time_ms) of an alert about flows ``rows`` of a
        :class:`~finsa.detectors.features.FlowFrame`: the first row's institution and source, the
        latest flow end over ``span`` (default ``rows``); None when that source already alerted
        in the window of that time."""
        return self._claim(frame, rows, "src_ip", rows if span is None else span, "")

    def claim_victim(self, frame: Any, rows: np.ndarray, scope: str = "") -> tuple[str, str, int] | None:
        """(institution, destination address, time_ms) of an alert about flows ``rows`` (the
        first row's institution and destination, the latest flow end); None when that victim
        already alerted in the window. A ``scope`` keeps kinds of alerts about one victim apart.

        >>> from finsa.wire import FLOW
        >>> from finsa.detectors.features import frame_of
        >>> frame = frame_of(FLOW.make_batch({"dst_ip": ["10.0.0.9"], "last_seen_ms": [9_000],
        ...                                   "institution_id": ["bank-a"]}))
        >>> d = WindowDeduper(60_000)
        >>> d.claim_victim(frame, np.array([0])), d.claim_victim(frame, np.array([0]))
        (('bank-a', '10.0.0.9', 9000), None)
        >>> d.claim_victim(frame, np.array([0]), scope="udp")
        ('bank-a', '10.0.0.9', 9000)
        """
        return self._claim(frame, rows, "dst_ip", rows, scope)

    def _claim(self, frame: Any, rows: np.ndarray, column: str, span: np.ndarray,
               scope: str) -> tuple[str, str, int] | None:
        cols, first = frame.cols, rows[0]
        inst = str(cols["institution_id"][first])
        entity = ips_to_strings(cols[column][first:first + 1])[0]
        time_ms = int(frame.end_ms[span].max())
        return (inst, entity, time_ms) if self.first(inst, f"{scope}:{entity}" if scope else entity, time_ms) else None

    def _prune(self, window: int) -> None:
        self._last = {k: w for k, w in self._last.items() if w >= window - 1}
        if len(self._last) >= self.max_entries:  # still full: forget the oldest half
            keep = sorted(self._last.items(), key=lambda kv: kv[1])[len(self._last) // 2:]
            self._last = dict(keep)


class Detector:
    """Base class of every detector (see the module docstring for the contract).

    Subclasses set ``name`` and ``technique``, take their hyperparameters as keyword arguments
    with immutable defaults, call :meth:`_check` on them, and implement :meth:`process`.
    Mutable state lives in attributes whose names start with ``_``; :meth:`clone` drops it.
    """

    name: str = "detector"
    technique: str = ""
    #: The wire record :meth:`process` consumes: ``"flow"`` (FLOW batches) or ``"arp"`` (ARP bindings).
    record: str = "flow"

    def __init__(self, *, window_ms: int = 60_000, seed: int = 0) -> None:
        self.window_ms = int(window_ms)
        self.seed = int(seed)
        self._check(window_ms=(window_ms, 1_000, 3_600_000))

    def _check(self, **specs: tuple[float, float, float]) -> None:
        """Refuse a parameter outside [low, high]: ``name=(value, low, high)``."""
        for pname, (value, low, high) in specs.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DetectorParamError(f"{self.name}.{pname}: {value!r} is not a number")
            if not low <= value <= high:
                raise DetectorParamError(f"{self.name}.{pname}: {value!r} not in [{low}, {high}]")

    def _get_params(self) -> dict[str, Any]:
        """The hyperparameters, read back from the attributes named like the constructor's arguments."""
        params = {}
        for cls in type(self).__mro__:
            if cls is object:
                continue
            for pname, p in inspect.signature(cls.__init__).parameters.items():  # type: ignore[misc]  # read, not called
                if p.kind is p.KEYWORD_ONLY and pname not in params and hasattr(self, pname):
                    params[pname] = copy.deepcopy(getattr(self, pname))
        return params

    def clone(self, **overrides: Any) -> "Detector":
        """A fresh untrained detector with the same hyperparameters (some possibly replaced)."""
        return type(self)(**{**self._get_params(), **overrides})

    @property
    def trained(self) -> bool:
        """Whether any state was built (False for a new or cloned detector)."""
        return any(k.startswith("_") and v is not None and v != {} and v != []
                   for k, v in vars(self).items())

    def _frame(self, flows: RecordBatch) -> FlowFrame | None:
        """The opening every flow detector's :meth:`process` shares: None for an empty batch
        (no alerts), else the batch's :class:`~finsa.detectors.features.FlowFrame` (cached, so the
        detectors of one engine share it).

        >>> from finsa.wire import FLOW
        >>> Detector()._frame(FLOW.make_batch({})) is None, type(Detector()._frame(FLOW.make_batch({"dst_port": [80]})))
        (True, <class 'finsa.detectors.features.FlowFrame'>)
        """
        return frame_of(flows) if len(flows) else None

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        """Learn from and score one flow batch; return alert rows (ALERT columns)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self._get_params().items()))
        return f"{type(self).__name__}({args})"
