"""Runs a set of detectors over flow batches and returns one ALERT batch per flow batch.

The engine is what the stream layer calls: ``DetectionEngine().process(flows)`` validates the
rows (a row with an impossible time, no institution, no packet, or NaN is skipped and counted in
``finsa_detector_rows_skipped_total{reason}`` and in the engine's own :attr:`DetectionEngine.skipped`,
which ``finsa detect`` and ``finsa eval`` print), cuts a huge batch into chunks, runs every
detector, counts the alerts it emits in ``finsa_detector_alerts_total{detector}`` (and a detector that raises
in ``finsa_detector_errors_total{detector}``, the others still run), and returns the alerts as a
:data:`finsa.wire.ALERT` batch, possibly empty. The alert batch id is derived from the flow batch
id, so a redelivered flow batch gives an alert batch with the same id. The engine pickles with
all its detectors' state (checkpoint it between batches).

Built from an operator's file (:mod:`finsa.detectors.config`) with
``DetectionEngine.from_config(cfg, registry)``, the engine runs one detector instance per distinct
parameter set: institutions with an override (their own, or their subsector's, looked up in the
institutions ``registry``) get their own instance, a detector disabled for an institution never
sees its rows, and alerts the allowlist accepts are dropped and counted in
``finsa_detector_alerts_suppressed_total{detector}``. :meth:`DetectionEngine.reconfigure` swaps
the config between two batches and keeps every instance (with its learned state) whose
parameters did not change.

>>> from finsa.wire import FLOW
>>> engine = DetectionEngine()
>>> len(engine.process(FLOW.make_batch({}))), [d.name for d in engine.detectors][:3]
(0, ['portscan', 'synflood', 'bruteforce'])
>>> from finsa.detectors.config import parse_detectors_config
>>> cfg = parse_detectors_config({"overrides": {"institution": {"pay-b": {"portscan": {"min_ports": 8}}}}})
>>> engine = DetectionEngine.from_config(cfg)
>>> engine.instance_for("portscan", "pay-b").min_ports, engine.instance_for("portscan", "bank-a").min_ports
(8, 20)
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from finsa.detectors.allowlist import Allowlist
from finsa.detectors.base import Detector
from finsa.detectors.registry import DEFAULT_NAMES, create
from finsa.metrics import REGISTRY
from finsa.wire import ALERT, FLOW, RecordBatch

if TYPE_CHECKING:  # the engine runs without a config; config imports pydantic models only when used
    from pathlib import Path

    from finsa.detectors.config import Config
    from finsa.institutions import Registry

__all__ = ["DetectionEngine", "default_detectors", "valid_rows"]

SKIPPED = REGISTRY.counter("finsa_detector_rows_skipped_total", "Flow rows the detectors skipped", ["reason"])
ALERTS = REGISTRY.counter("finsa_detector_alerts_total", "Alerts raised", ["detector"])
ERRORS = REGISTRY.counter("finsa_detector_errors_total", "Batches a detector failed on", ["detector"])
FLOWS = REGISTRY.counter("finsa_detector_flows_total", "Flow rows given to the detectors")
VERDICTS = REGISTRY.counter("finsa_detector_verdicts_learned_total",
                             "Analysts' verdicts an online detector learned from", ["detector"])
SUPPRESSED = REGISTRY.counter("finsa_detector_alerts_suppressed_total",
                              "Alerts dropped because the allowlist accepts them", ["detector"])

#: Flow times outside [1970-01-01, 2100-01-01) are refused (counted under ``bad_time``). Old
#: captures, lab captures rebased to the epoch and devices with unset clocks give times from
#: 1970 on: they are taken, since detectors only compare flow times with each other.
MIN_TIME_MS, MAX_TIME_MS = 0, 4_102_444_800_000
MAX_FLOW_DURATION_MS = 7 * 86_400_000
MAX_PACKETS, MAX_BYTES = 10**12, 10**15
MAX_CHUNK_ROWS = 262_144
#: A batch spanning more flow time than this is fed in time order, slice by slice: detectors
#: expire their windows against the newest flow they saw, so one batch covering minutes (a worker
#: catching up after an outage, a whole capture offline) must not let its newest flows push its
#: oldest out of the window before they are scored.
MAX_SLICE_MS = 30_000  # half the shortest detector window (60 s)


def time_slices(batch: RecordBatch, batch_id: bytes, max_span_ms: int = MAX_SLICE_MS,
                max_rows: int = MAX_CHUNK_ROWS) -> list[RecordBatch]:
    """``batch`` as chunks in flow-end order, cut at fixed ``max_span_ms`` boundaries of flow time
    (and at most ``max_rows`` each). Boundaries are absolute, not relative to the batch, so how
    messages were grouped does not change where detectors see time advance.

    A batch spanning at most ``max_span_ms`` comes back as it is (the live case: about a second of
    flows), so grouping messages changes nothing there.
    """
    t = np.asarray(batch.columns["last_seen_ms"])
    if len(batch) <= max_rows and (len(t) == 0 or int(t.max()) - int(t.min()) <= max_span_ms):
        return [batch]
    order = np.argsort(t, kind="stable")
    bucket = t[order] // max_span_ms
    edges = np.flatnonzero(np.diff(bucket)) + 1
    cuts = [0]
    for end in [*edges.tolist(), len(order)]:
        while end - cuts[-1] > max_rows:
            cuts.append(cuts[-1] + max_rows)
        cuts.append(end)
    return [batch.take(order[a:b], batch_id) for a, b in zip(cuts[:-1], cuts[1:])]


def default_detectors(seed: int = 0) -> list[Detector]:
    """The standard detector set, each with its default hyperparameters."""
    return [create(name, seed=seed) for name in DEFAULT_NAMES]


def _finite_ints(flows: RecordBatch) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Columns cast to their wire types, and the rows that held NaN/inf where a number belongs."""
    cols, bad = dict(flows.columns), np.zeros(len(flows), dtype=bool)
    for f in FLOW.fields:
        col = cols.get(f.name)
        if col is None:
            cols[f.name] = f.empty(len(flows))
        elif f.kind not in ("ip", "str") and col.dtype.kind == "f":
            finite = np.isfinite(col)
            bad |= ~finite
            cols[f.name] = f.coerce(np.where(finite, col, 0))
    return cols, bad


def _no_address(column: np.ndarray) -> np.ndarray:
    """Rows of an (n, 16) address column that are all zero (two 8-byte words, not 16 bytes, tested).

    >>> _no_address(np.array([[0] * 16, [0] * 15 + [1]], np.uint8)).tolist()
    [True, False]
    """
    words = np.ascontiguousarray(column, dtype=np.uint8).view("<u8").reshape(-1, 2)
    return (words[:, 0] | words[:, 1]) == 0


def valid_rows(flows: RecordBatch) -> tuple[RecordBatch, dict[str, int]]:
    """The batch without its bad rows, and how many rows were skipped per reason."""
    cols, not_finite = _finite_ints(flows)
    first, last = cols["first_seen_ms"].astype(np.int64), cols["last_seen_ms"].astype(np.int64)
    reasons = {
        "not_finite": not_finite,
        "no_institution": cols["institution_id"] == "",
        "bad_time": ((first < MIN_TIME_MS) | (first >= MAX_TIME_MS) | (last < first)
                     | (last - first > MAX_FLOW_DURATION_MS)),
        "bad_counts": ((cols["src2dst_packets"] == 0) | (cols["src2dst_packets"] > MAX_PACKETS)
                       | (cols["dst2src_packets"] > MAX_PACKETS) | (cols["src2dst_bytes"] > MAX_BYTES)
                       | (cols["dst2src_bytes"] > MAX_BYTES)),
        "no_address": _no_address(cols["src_ip"]) | _no_address(cols["dst_ip"]),
    }
    bad = np.zeros(len(flows), dtype=bool)
    counts = {}
    for reason, mask in reasons.items():
        fresh = mask & ~bad  # a row is counted once, under its first reason
        if fresh.any():
            counts[reason] = int(fresh.sum())
        bad |= mask
    clean = RecordBatch(FLOW, cols, flows.batch_id)
    return (clean.take(~bad, flows.batch_id) if bad.any() else clean), counts


def _key(detector: Detector) -> tuple:
    """(name, parameters without the seed): instances with equal keys are interchangeable."""
    from finsa.detectors.config import params_key

    params = {k: v for k, v in detector._get_params().items() if k != "seed"}
    return detector.name, params_key(params)


@dataclass
class _Slot:
    """One detector name: its instance for most institutions, and the exceptions."""

    name: str
    default: Detector | None
    special: dict[str, Detector | None] = field(default_factory=dict)  # None: disabled there


@dataclass
class _State:
    """Everything process() reads, swapped as one attribute by reconfigure()."""

    slots: list[_Slot]
    allowlist: Allowlist = field(default_factory=Allowlist)


class DetectionEngine:
    """Every enabled detector over each flow batch; see the module docstring."""

    def __init__(self, detectors: list[Detector] | None = None, seed: int = 0) -> None:
        self.seed = seed
        detectors = list(detectors) if detectors is not None else default_detectors(seed)
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"detector names must be unique, got {names}")
        self.config: Config | None = None
        self.registry: Registry | None = None
        self._accepted = Allowlist()  # analysts' accepted entries (from the store), apart from the file's
        self._verdicts: collections.deque = collections.deque()  # analysts' verdicts, learned at the next batch
        self._state = _State([_Slot(d.name, d) for d in detectors])
        #: Flow rows this engine refused, per reason (the metric counts every engine of the process).
        self.skipped: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg: "Config", registry: "Registry | None" = None, seed: int = 0) -> "DetectionEngine":
        """An engine running ``cfg``; institution -> subsector comes from ``registry``."""
        engine = cls([], seed=seed)
        engine.reconfigure(cfg, registry)
        return engine

    @classmethod
    def from_files(cls, config: "str | Path | None" = None, registry_path: "str | Path | None" = None,
                   seed: int = 0) -> "DetectionEngine":
        """The engine of an operator's detectors file and institutions file (either may be None:
        every default detector; without a registry no institution has a subsector). A file that
        cannot be read raises OSError, an invalid one ConfigError listing every problem."""
        registry = None
        if registry_path is not None:
            from finsa.institutions import load_registry

            registry = load_registry(registry_path)
        if config is None and registry is None:
            return cls(seed=seed)
        from finsa.detectors.config import default_config, load_detectors_config

        cfg = default_config() if config is None else load_detectors_config(config, registry)
        return cls.from_config(cfg, registry, seed=seed)

    @property
    def detectors(self) -> list[Detector]:
        """Every distinct detector instance, in run order."""
        seen: dict[int, Detector] = {}
        for slot in self._state.slots:
            for d in (slot.default, *slot.special.values()):
                if d is not None:
                    seen.setdefault(id(d), d)
        return list(seen.values())

    def instance_for(self, name: str, institution_id: str) -> Detector | None:
        """The instance that sees this institution's rows for a detector (None: not run there)."""
        for slot in self._state.slots:
            if slot.name == name:
                return slot.special[institution_id] if institution_id in slot.special else slot.default
        return None

    def reconfigure(self, cfg: "Config", registry: "Registry | None" = None) -> dict[str, int]:
        """Run ``cfg`` from the next batch on, keeping instances whose parameters are unchanged.

        ``registry`` replaces the institutions registry (None keeps the current one). Returns how
        many instances were ``kept`` (with their state), ``new`` and ``dropped``.
        """
        registry = registry if registry is not None else self.registry
        old = {_key(d): d for d in self.detectors}
        pool: dict[tuple, Detector] = {}

        def instance(name: str, params: dict[str, Any]) -> Detector:
            made = create(name, seed=self.seed, **params)
            return pool.setdefault(_key(made), old.get(_key(made), made))

        places = _places(cfg, registry)
        slots = []
        for name in cfg.names():
            enabled, base = cfg.effective(name)
            slot = _Slot(name, instance(name, base) if enabled else None)
            for inst, subsector in places:
                on, params = cfg.effective(name, inst, subsector)
                if (on, params) != (enabled, base):
                    slot.special[inst] = instance(name, params) if on else None
            if slot.default is not None or any(slot.special.values()):
                slots.append(slot)
        kept = sum(1 for k, d in pool.items() if old.get(k) is d)
        allowed = Allowlist((*cfg.allowlist, *getattr(self, "_accepted", Allowlist()).entries))
        self._state = _State(slots, allowed)  # one assignment: process() sees old or new
        self.config, self.registry = cfg, registry
        return {"kept": kept, "new": len(pool) - kept, "dropped": len(old) - kept}

    def use_accepted(self, accepted: Allowlist) -> None:
        """Apply ``accepted`` (the analysts' allowlist entries the operator accepted) beside the
        config file's allowlist, from the next batch on."""
        self._accepted = accepted
        own = self.config.allowlist if self.config is not None else ()
        self._state = _State(self._state.slots, Allowlist((*own, *accepted.entries)))

    def take_verdicts(self, verdicts: list[tuple[dict[str, Any], str]]) -> None:
        """Analysts' verdicts ((alert row with evidence as a dict, verdict)): each reaches the
        detector instance that raised the alert, if it learns from them (``learn_verdict``), in the
        processing thread at the next batch."""
        if getattr(self, "_verdicts", None) is None:  # an engine pickled before verdicts existed
            self._verdicts = collections.deque()
        self._verdicts.extend(verdicts)  # deque: appends from the poller's thread are atomic

    def _learn_verdicts(self) -> None:
        while self._verdicts:
            alert, verdict = self._verdicts.popleft()
            instance = self.instance_for(str(alert.get("detector")), str(alert.get("institution_id")))
            learn = getattr(instance, "learn_verdict", None)
            if learn is not None and learn(alert, verdict):
                VERDICTS.inc(detector=str(alert.get("detector")))

    def process(self, flows: RecordBatch) -> RecordBatch:
        """Alerts raised by this flow batch, or ARP binding batch (an ALERT batch, possibly empty)."""
        if getattr(self, "_verdicts", None):
            self._learn_verdicts()
        state = self._state
        rows: list[dict[str, Any]] = []
        if len(flows) and flows.type.name == "arp":
            rows = self._run(flows.take(flows.columns["institution_id"] != "", flows.batch_id), state)
        elif len(flows):
            FLOWS.inc(len(flows))
            clean, skipped = valid_rows(flows)
            mine = self.__dict__.setdefault("skipped", {})  # an engine unpickled from before the field
            for reason, count in skipped.items():
                SKIPPED.inc(count, reason=reason)
                mine[reason] = mine.get(reason, 0) + count
            for chunk in time_slices(clean, flows.batch_id):
                rows.extend(self._run(chunk, state))
        rows = self._count(rows, state.allowlist)
        alert_batch_id = hashlib.blake2b(b"alerts:" + flows.batch_id, digest_size=16).digest()
        if not rows:
            return ALERT.make_batch({}, batch_id=alert_batch_id)
        rows.sort(key=lambda r: (r["time_ms"], r["detector"], r["alert_id"]))
        columns = {name: [r[name] for r in rows] for name in ALERT.names}
        return ALERT.make_batch(columns, batch_id=alert_batch_id)

    @staticmethod
    def _count(rows: list[dict[str, Any]], allowlist: Allowlist) -> list[dict[str, Any]]:
        kept, suppressed = allowlist.split(rows)
        for counter, group in ((ALERTS, kept), (SUPPRESSED, suppressed)):
            per_detector: dict[str, int] = {}
            for r in group:
                per_detector[r["detector"]] = per_detector.get(r["detector"], 0) + 1
            for name, n in per_detector.items():
                counter.inc(n, detector=name)
        return kept

    def _run(self, chunk: RecordBatch, state: _State) -> list[dict[str, Any]]:
        """Every instance over its rows; instances with the same rows share one sub-batch (and frame)."""
        work: dict[tuple, list[Detector]] = {}
        for slot in state.slots:
            for rows_key, detector in _assignments(slot):
                if detector.record == chunk.type.name:
                    work.setdefault(rows_key, []).append(detector)
        out: list[dict[str, Any]] = []
        for rows_key, detectors in work.items():
            part = _select(chunk, rows_key)
            if not len(part):
                continue
            for detector in detectors:
                try:
                    found = detector.process(part)
                except Exception:  # noqa: BLE001 - one detector's bug must not stop the others
                    ERRORS.inc(detector=detector.name)
                    continue
                out.extend(found or ())
        return out


def _places(cfg: "Config", registry: "Registry | None") -> list[tuple[str, str | None]]:
    """(institution, subsector) of every institution an override may apply to."""
    places = {}
    if registry is not None:
        for inst in registry.institution:
            if inst.subsector in cfg.subsector or inst.id in cfg.institution:
                places[inst.id] = inst.subsector
    for inst_id in cfg.institution:
        places.setdefault(inst_id, None)  # type: ignore[arg-type]  # an institution not in the registry: no subsector
    return sorted(places.items())


def _assignments(slot: _Slot) -> Iterator[tuple[tuple, Detector]]:
    """(which rows, instance) for one detector: ``("all",)``, ``("only", institutions)`` or
    ``("except", institutions)``."""
    if not slot.special:
        if slot.default is not None:
            yield ("all",), slot.default
        return
    if slot.default is not None:
        yield ("except", frozenset(slot.special)), slot.default
    groups: dict[int, tuple[Detector, set[str]]] = {}
    for name, detector in slot.special.items():
        if detector is not None:
            groups.setdefault(id(detector), (detector, set()))[1].add(name)
    for detector, names in groups.values():
        yield ("only", frozenset(names)), detector


def _select(chunk: RecordBatch, rows_key: tuple) -> RecordBatch:
    if rows_key[0] == "all":
        return chunk
    mine = np.isin(chunk.columns["institution_id"], sorted(rows_key[1]))
    if rows_key[0] == "except":
        mine = ~mine
    return chunk if mine.all() else chunk.take(mine, chunk.batch_id)
