"""What every payload detector shares: one alert per flow that shows a finding, once per pair and window.

A :class:`PayloadDetector` looks at the flows of a batch one by one (their ``app_markers`` or
``http_requests``). A subclass implements :meth:`~PayloadDetector._alerts`, a generator over the
batch's :class:`~finsa.detectors.features.FlowFrame` that yields :meth:`~PayloadDetector._emit`'s
answer for each finding, and may extend :meth:`~PayloadDetector._start` (its state, built on the
first non-empty batch); :meth:`~PayloadDetector.process` keeps the alerts.

``_emit`` builds the alert about flow ``row``: ``entity`` -> ``target`` (entity kind
``entity_kind``), at most once per (entity, target) and window, or once per entity where
``dedupe_pairs`` is False; confidence ``base_confidence + 0.1 * score`` (at most 1) unless given.

>>> from finsa.wire import FLOW
>>> class Marked(PayloadDetector):
...     name, technique = "marked", "T0000"
...     def _alerts(self, frame):
...         for row in range(len(frame.cols["flow_id"])):
...             yield self._emit(frame, row, "10.0.0.1", "10.0.0.2", {"row": row}, 3, 2.0)
>>> b = FLOW.make_batch({"first_seen_ms": [1_000, 2_000], "last_seen_ms": [5_000, 6_000], "flow_id": [7, 8],
...                      "institution_id": ["bank-a"] * 2})
>>> [(a["entity"], a["target"], a["time_ms"], a["confidence"], a["evidence"]) for a in Marked().process(b)]
[('10.0.0.1', '10.0.0.2', 5000, 0.7, '{"features": {"row": 0}, "flow_ids": [7]}')]
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from finsa.detectors.base import Detector, WindowDeduper, make_alert
from finsa.detectors.features import FlowFrame
from finsa.wire import RecordBatch

__all__ = ["PayloadDetector"]


class PayloadDetector(Detector):
    """Base of the payload detectors (see the module docstring)."""

    #: ``entity_kind`` of the alerts.
    entity_kind: str = "src_ip"
    #: True: one alert per (entity, target) and window; False: one per entity and window.
    dedupe_pairs: bool = True
    #: An alert's confidence is ``base_confidence + 0.1 * score`` (at most 1) unless given.
    base_confidence: float = 0.5

    def __init__(self, *, window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self._dedupe: WindowDeduper | None = None

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        self._start()
        return [alert for alert in self._alerts(frame) if alert is not None]

    def _start(self) -> None:
        """Build the state on the first non-empty batch (none here: the deduper comes with the first alert)."""

    def _alerts(self, frame: FlowFrame) -> Iterator[dict[str, Any] | None]:  # pragma: no cover - abstract
        """:meth:`_emit`'s answer for each finding in the batch ``frame``."""
        raise NotImplementedError

    def _emit(self, frame: FlowFrame, row: int, entity: str, target: str, feats: dict[str, Any], severity: int,
              score: float, *, confidence: float | None = None,
              flow_ids: Iterable[int] | None = None) -> dict[str, Any] | None:
        """The alert about flow ``row`` (evidence: ``flow_ids``, default that flow), or None when
        its entity (and target) already alerted in the window of the flow's end."""
        if self._dedupe is None:
            self._dedupe = WindowDeduper(self.window_ms)
        cols = frame.cols
        inst, t = str(cols["institution_id"][row]), int(frame.end_ms[row])
        if not self._dedupe.first(inst, f"{entity}>{target}" if self.dedupe_pairs else entity, t):
            return None
        return make_alert(detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
                          entity_kind=self.entity_kind, target=target, time_ms=t, first_seen_ms=int(frame.t_ms[row]),
                          window_ms=self.window_ms, severity=severity, score=score,
                          confidence=min(1.0, self.base_confidence + 0.1 * score) if confidence is None else confidence,
                          features=feats, flow_ids=cols["flow_id"][row:row + 1] if flow_ids is None else flow_ids)
