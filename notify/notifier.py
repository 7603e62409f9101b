"""The notifier: routes notices to receivers through the outbox, and delivers in its own thread.

:meth:`Notifier.offer` takes the sector picture's output (``"warning"``, ``"emergency"`` or
``"alert"`` and a wire batch), turns each record into a :class:`~finsa.notify.messages.Notice`,
finds the institutions it concerns (a warning to a subsector, region or the sector concerns each
institution there, from the registry), and stores one message per (institution, receiver) the
routes pick. The delivery thread sends due messages, marks them sent, and on a failure schedules
a retry with back-off. :meth:`Notifier.stop` waits for the delivery in progress, so a graceful
stop never leaves a message sent but not marked.

Counters: ``finsa_notify_messages_total{outcome}`` (queued, duplicate, sent, retry, gave_up).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from typing import Any, Iterable

from finsa.metrics import REGISTRY
from finsa.wire import RecordBatch

from finsa.notify.config import NotifyConfig
from finsa.notify.messages import Notice, message_id, notices_of
from finsa.notify.outbox import Outbox
from finsa.notify.senders import DeliveryError, deliver

__all__ = ["Notifier"]

MESSAGES = REGISTRY.counter("finsa_notify_messages_total", "Notification messages, by outcome", ["outcome"])
_log = logging.getLogger(__name__)


class Notifier:
    """See the module docstring. ``registry``: a :class:`finsa.institutions.Registry` (or None:
    warnings to a subsector, region or the sector reach only routes for ``*``)."""

    def __init__(self, config: NotifyConfig, registry: Any = None, poll_s: float = 0.5) -> None:
        self.config, self.registry, self.poll_s = config, registry, poll_s
        self.outbox: Outbox | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> "Notifier":
        self.outbox = Outbox(self.config.outbox.path)
        self._thread = threading.Thread(target=self._run, name="finsa-notify", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        if self.outbox is not None:
            self.outbox.close()

    @property
    def _box(self) -> Outbox:
        if self.outbox is None:
            raise RuntimeError("the notifier is not started")
        return self.outbox

    # --- routing -----------------------------------------------------------------------
    def _institutions(self, notice: Notice) -> list[str]:
        if notice.institution_id:
            return [notice.institution_id]
        kind, scope = notice.scope
        if self.registry is None:
            return [""]
        insts = list(self.registry.institution)
        if kind == "subsector":
            return [i.id for i in insts if i.subsector == scope]
        if kind == "region":
            return [i.id for i in insts if i.region == scope]
        return [i.id for i in insts]

    def _receivers(self, notice: Notice, institution: str) -> list[str]:
        names: dict[str, None] = {}
        for route in self.config.route:
            if (notice.kind in route.kinds and notice.severity >= route.min_severity
                    and ("*" in route.institutions or institution in route.institutions)):
                names.update(dict.fromkeys(route.receivers))
        return list(names)

    def offer(self, kind: str, batch: RecordBatch) -> int:
        """Queue the messages of a warning, emergency or alert batch; returns how many are new."""
        if kind not in ("warning", "emergency", "alert") or not len(batch) or self.outbox is None:
            return 0
        return self.offer_notices(notices_of(kind, batch.rows()))

    def offer_notices(self, notices: Iterable[Notice]) -> int:
        new = 0
        for notice in notices:
            payload = json.dumps({**dataclasses.asdict(notice), "scope": list(notice.scope)}).encode()
            for institution in self._institutions(notice):
                for receiver in self._receivers(notice, institution):
                    added = self._box.add(message_id(notice, f"{receiver}/{institution}"), receiver, institution, payload)
                    MESSAGES.inc(outcome="queued" if added else "duplicate")
                    new += added
        if new:
            self._wake.set()
        return new

    # --- delivery ----------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self.deliver_due()
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def deliver_due(self) -> int:
        """Send every due message once (a stop request ends the round between two messages)."""
        sent = 0
        out = self.config.outbox
        for message in self._box.due():
            if self._stop.is_set():
                break
            receiver = self.config.receiver.get(message.receiver)
            if receiver is None:  # removed from the config: keep it, counted
                continue
            try:
                deliver(receiver, message.id, message.payload, message.institution, out.timeout_s)
            except (DeliveryError, ValueError, KeyError) as exc:
                gave_up = self._box.failed(message.id, str(exc), out.retry_s, out.max_retry_s, out.max_attempts)
                MESSAGES.inc(outcome="gave_up" if gave_up else "retry")
                continue
            self._box.sent(message.id)
            MESSAGES.inc(outcome="sent")
            sent += 1
        return sent
