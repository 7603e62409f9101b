"""The Faust application of a stream worker.

One agent consumes ``finsa.flows.v1``; each message is one flow batch, handed to a
:class:`~finsa.streams.processor.FlowProcessor` in a thread (storage calls block). Alerts are
published to ``finsa.alerts.v1``; malformed messages go to ``finsa.dlq.v1`` with their reason in
the headers. Processing is at-least-once: Faust commits an offset only after the agent finished
with the message, and storage writes are idempotent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import faust

from finsa import wire
from finsa.metrics import REGISTRY
from finsa.streams.processor import FlowProcessor

DEAD_LETTERS = REGISTRY.counter("finsa_worker_dead_letters_total", "Messages sent to the dead-letter topic", ["reason"])


@dataclass
class WorkerSettings:
    """How a worker connects and behaves.

    ``session_timeout_s`` bounds how long a consumer-group join takes (about half of it on Tansu);
    keep it low in tests.
    """

    bootstrap: str
    app_id: str = "finsa-worker"
    partitions: int = 4
    session_timeout_s: float = 6.0
    datadir: Path = Path("/tmp/finsa-faust")
    broker_credentials: object | None = None


def build_app(settings: WorkerSettings, processor: FlowProcessor) -> faust.App:
    """A Faust app with the flow agent wired to ``processor``."""
    app = faust.App(
        settings.app_id, broker=f"kafka://{settings.bootstrap}", store="memory://",
        processing_guarantee="at_least_once", web_enabled=False, topic_partitions=settings.partitions,
        broker_session_timeout=settings.session_timeout_s, broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest", datadir=str(settings.datadir),
        broker_credentials=settings.broker_credentials, producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
    )
    raw = {"value_type": bytes, "value_serializer": "raw", "key_serializer": "raw"}
    flows_topic = app.topic(wire.TOPICS["flows"], partitions=settings.partitions, **raw)
    alerts_topic = app.topic(wire.TOPICS["alerts"], partitions=settings.partitions, **raw)
    dlq_topic = app.topic(wire.TOPICS["dlq"], partitions=1, **raw)

    @app.agent(flows_topic, name="detect")
    async def detect(stream):  # noqa: ANN001 - faust stream
        loop = asyncio.get_running_loop()
        async for event in stream.events():
            payload = event.value if isinstance(event.value, (bytes, bytearray)) else b""
            outcome = await loop.run_in_executor(None, processor.process, payload)
            if outcome.dead_reason:
                DEAD_LETTERS.inc(reason=outcome.dead_reason)
                msg = event.message
                headers = {"reason": outcome.dead_reason.encode(), "detail": outcome.dead_detail[:500].encode(),
                           "topic": str(msg.topic).encode(), "partition": str(msg.partition).encode(),
                           "offset": str(msg.offset).encode()}
                await dlq_topic.send(key=event.key, value=payload, headers=headers)
            elif outcome.alerts is not None:
                await alerts_topic.send(key=event.key, value=wire.encode_batch(outcome.alerts))

    app.finsa_topics = {"flows": flows_topic, "alerts": alerts_topic, "dlq": dlq_topic}
    return app
