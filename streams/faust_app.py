"""The Faust application of a stream worker.

One agent consumes ``finsa.flows.v2``; each message is one flow batch. Messages are grouped (up
to ``group_max``, or whatever arrived within ``group_within_s``) and handed to a
:class:`~finsa.streams.processor.FlowProcessor`: one detection pass and one store write per
group, detection and storage in two threads so that successive groups overlap. Alerts are
published to ``finsa.alerts.v1``; malformed messages go to ``finsa.dlq.v1`` with their reason in
the headers. Processing is at-least-once: Faust commits an offset only after the agent finished
with the message, and storage writes are idempotent.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import faust

from finsa import allocator, wire
from finsa.batchauth import SERVICE_SIGNER, sign_headers
from finsa.errors import ConfigError
from finsa.metrics import REGISTRY
from finsa.streams.held_flows import HeldFlows
from finsa.streams.memory_return import MemoryReturn
from finsa.streams.processor import FlowProcessor
from finsa.streams.progress import Progress, message_kind
from finsa.streams.sector_stage import SectorStage

DEAD_LETTERS = REGISTRY.counter("finsa_worker_dead_letters_total", "Messages sent to the dead-letter topic", ["reason"])


@dataclass
class WorkerSettings:
    """How a worker connects and behaves.

    ``session_timeout_s`` bounds how long a consumer-group join takes (about half of it on Tansu);
    keep it low in tests.

    Memory is bounded by messages in hand, not by lag: Faust buffers at most ``buffer_messages``
    flow batches per stream (its default, 4096 batches of 5,000 flows, is ~2.3 GB once a worker
    falls behind), and one poll of the consumer decodes at most ``poll_messages``.

    A group is also bounded in bytes (``group_max_bytes``): collectors may send batches of up to
    a million flows, and 64 of them decoded at once would be gigabytes. After each stored group
    the worker hands freed memory back (:mod:`finsa.streams.memory_return`): glibc's free pages
    (``trim_after_group``) and the dirty pages of the store's engine (``purge_store_after_group``).

    A group is bounded by its age and bytes first: ``group_max`` messages is a loose cap,
    because collectors send small messages (an agent flushes each capture or interval) and a
    message count would cut groups short (64 messages held ~30k flows in ``bench pipeline``: a
    write per second, each with its fixed cost of parts; 512: 22k -> 29.6k flows per CPU
    second over all processes at 25k flows/s offered).

    >>> s = WorkerSettings("127.0.0.1:9092")
    >>> (s.group_max, s.buffer_messages, s.poll_messages, s.group_within_s)
    (512, 128, 64, 2.0)
    >>> WorkerSettings("127.0.0.1:9092", group_max_bytes=0, trim_every_s=-1)
    Traceback (most recent call last):
    ...
    finsa.errors.ConfigError: worker settings: 2 problems
      group_max_bytes: must be > 0, got 0
      trim_every_s: must be >= 0 (0 turns it off), got -1
    """

    bootstrap: str
    app_id: str = "finsa-worker"
    partitions: int = 4
    session_timeout_s: float = 6.0
    datadir: Path = Path("/tmp/finsa-faust")
    broker_credentials: object | None = None
    group_max: int = 512
    #: a group is at most this old when it is handed on (each store write has a fixed cost: a
    #: part per table and roll-up; fewer, larger writes are cheaper per flow)
    group_within_s: float = 2.0
    #: flow batches Faust may hold for the agent before it pauses fetching (``stream_buffer_maxsize``)
    buffer_messages: int = 128
    #: messages one consumer poll decodes at most (``broker_max_poll_records``)
    poll_messages: int = 64
    #: glibc malloc arenas for the worker's threads, and how often freed memory is handed back
    #: (:mod:`finsa.allocator`; 0 leaves glibc's defaults)
    malloc_arenas: int = 2
    trim_every_s: float = 10.0
    #: bytes of flow messages one group holds at most (a message larger than this is a group alone)
    group_max_bytes: int = 32 * 2**20
    #: a group's alerts are written when it is detected; its flows may be held for one larger
    #: write (:mod:`finsa.streams.held_flows`) until this many rows are held, or the oldest held
    #: is ``flow_write_within_s`` old (0: 2.5 group ages); its messages are acknowledged after it
    flow_write_rows: int = 200_000
    flow_write_within_s: float = 0.0
    #: after each stored group: glibc's free pages back (``malloc_trim``), and the store engine's
    #: dirty pages (chdb's jemalloc, ``SYSTEM JEMALLOC PURGE``), at most once per ``return_min_interval_s``
    trim_after_group: bool = True
    purge_store_after_group: bool = True
    return_min_interval_s: float = 0.0
    #: count each arriving flow-topic message as offered in ``processor.progress`` (``finsa run``
    #: counts what its collector had acknowledged instead)
    count_offered: bool = True

    def __post_init__(self) -> None:
        positive = ("partitions", "session_timeout_s", "group_max", "group_within_s", "buffer_messages",
                    "poll_messages", "group_max_bytes", "flow_write_rows")
        problems = [f"{name}: must be > 0, got {getattr(self, name)}" for name in positive
                    if not getattr(self, name) > 0]
        problems += [f"{name}: must be >= 0 (0 turns it off), got {getattr(self, name)}"
                     for name in ("malloc_arenas", "trim_every_s", "return_min_interval_s") if getattr(self, name) < 0]
        if self.flow_write_within_s < 0:
            problems.append(f"flow_write_within_s: must be >= 0 (0: 2.5 x group_within_s), got {self.flow_write_within_s}")
        if problems:
            raise ConfigError("worker settings", problems)


def build_app(settings: WorkerSettings, processor: FlowProcessor, sector: SectorStage | None = None) -> faust.App:
    """A Faust app with the flow agent wired to ``processor`` (and the sector agent to ``sector``)."""
    app = faust.App(
        settings.app_id, broker=f"kafka://{settings.bootstrap}", store="memory://",
        processing_guarantee="at_least_once", web_enabled=False, topic_partitions=settings.partitions,
        broker_session_timeout=settings.session_timeout_s, broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest", datadir=str(settings.datadir),
        broker_credentials=settings.broker_credentials, producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024, stream_buffer_maxsize=settings.buffer_messages,
        broker_max_poll_records=settings.poll_messages,
    )
    raw: dict[str, Any] = {"value_type": bytes, "value_serializer": "raw", "key_serializer": "raw"}
    flows_topic = app.topic(wire.TOPICS["flows"], partitions=settings.partitions, **raw)
    alerts_topic = app.topic(wire.TOPICS["alerts"], partitions=1, **raw)  # one sector consumer sees all
    dlq_topic = app.topic(wire.TOPICS["dlq"], partitions=1, **raw)

    release = getattr(processor.store, "release_memory", None) if settings.purge_store_after_group else None
    processor.held = HeldFlows(settings.flow_write_rows, settings.flow_write_within_s or 2.5 * settings.group_within_s)
    grouper = _Grouper(processor, alerts_topic, dlq_topic, settings.group_max, settings.count_offered,
                       alerts_consumed_here=sector is not None, group_max_bytes=settings.group_max_bytes,
                       memory_return=MemoryReturn(settings.trim_after_group, release, settings.return_min_interval_s))

    @app.agent(flows_topic, name="detect")
    async def detect(stream):  # faust stream
        async for event in stream.noack().events():
            await grouper.add(event)

    @app.timer(settings.group_within_s)
    async def flush_group() -> None:
        await grouper.flush()

    if settings.trim_every_s > 0:
        @app.timer(settings.trim_every_s)
        async def trim_memory() -> None:  # freed batches back to the system: RSS follows the heap
            allocator.trim()

    if sector is not None:
        _sector_agents(app, sector, alerts_topic, dlq_topic, raw, lambda: processor.progress)
    app.finsa_topics = {"flows": flows_topic, "alerts": alerts_topic, "dlq": dlq_topic}  # type: ignore[attr-defined]  # read back by the worker and tests
    app.finsa_grouper = grouper  # type: ignore[attr-defined]  # drained by StreamService.stop
    return app


class _Grouper:
    """Collect flow events and process them as a group; ack each only after its group is stored.

    The stream runs without automatic acks: an event's offset becomes committable only after the
    flows and alerts of its group were written (or it went to the dead-letter topic). A crash or a
    cancellation mid-group leaves the whole group unacknowledged, so it is redelivered.

    Groups run as a pipeline of two threads: one decodes, verifies and detects (in group order,
    the detectors' state is sequential), the other writes (in group order; the store takes one
    write at a time). So consumption, detection and the store write of successive groups overlap;
    at most ``max_in_flight`` groups are past the consumer at once (back-pressure: a full pipeline
    makes the next group wait, and larger, which the store writes more cheaply). A group is at
    most ``group_max`` messages and ``group_max_bytes`` of payload; once a group is stored and
    acknowledged and its objects are freed, the store thread hands the memory back
    (``memory_return``) before the next write.
    """

    def __init__(self, processor: FlowProcessor, alerts_topic, dlq_topic, group_max: int,
                 count_offered: bool = True, alerts_consumed_here: bool = False, max_in_flight: int = 2,
                 group_max_bytes: int = 32 * 2**20, memory_return: MemoryReturn | None = None) -> None:
        self.processor, self.alerts_topic, self.dlq_topic = processor, alerts_topic, dlq_topic
        self.group_max, self.count_offered, self.max_in_flight = group_max, count_offered, max_in_flight
        self.group_max_bytes = group_max_bytes
        self.memory_return = memory_return or MemoryReturn(False, None)
        self.pending_bytes = 0
        #: this app's sector agent consumes the alerts it sends: they are offered to it (a drain
        #: waits until the sector picture took them)
        self.alerts_consumed_here = alerts_consumed_here
        self.pending: list = []
        #: events of groups handed through the pipeline whose flows are held for a larger write:
        #: acknowledged once it is made
        self.unacked: list = []
        self.lock = asyncio.Lock()
        self._in_flight: deque[asyncio.Future] = deque()
        self._detect = ThreadPoolExecutor(1, thread_name_prefix="finsa-detect")
        self._write = ThreadPoolExecutor(1, thread_name_prefix="finsa-store")

    async def add(self, event) -> None:
        progress, payload = self.processor.progress, _payload(event)
        if self.count_offered and progress is not None:
            progress.offer(message_kind(payload))
        self.pending.append(event)
        self.pending_bytes += len(payload)
        if len(self.pending) >= self.group_max or self.pending_bytes >= self.group_max_bytes:
            await self.flush()

    async def flush(self, write_held: bool = False) -> None:
        """Hand the pending events to the pipeline (waiting while it is full). With nothing
        pending, write the held flows when they are due (or ``write_held``) and ack their groups."""
        async with self.lock:
            while self._in_flight and (self._in_flight[0].done() or len(self._in_flight) >= self.max_in_flight):
                done = self._in_flight[0]
                await asyncio.wait([done])
                self._in_flight.popleft()
                done.result()  # a failed group raises here, into the agent
            group, self.pending, self.pending_bytes = self.pending, [], 0
            if not group:
                held = getattr(self.processor, "held", None)
                if self.unacked and (write_held or (held is not None and held.due())):
                    before = self._in_flight[-1] if self._in_flight else None
                    self._in_flight.append(asyncio.ensure_future(self._write_held(before)))
                return
            payloads = [_payload(e) for e in group]
            headers = [e.message.headers for e in group]
            prepared = asyncio.get_running_loop().run_in_executor(
                self._detect, self.processor.prepare_group, payloads, headers)
            before = self._in_flight[-1] if self._in_flight else None
            self._in_flight.append(asyncio.ensure_future(self._finish(group, prepared, before)))

    async def drain(self) -> None:
        """Hand on what is pending and wait until every group handed out is stored and acked
        (a stopping worker calls it before Faust stops: its timers stop first, and Faust then
        waits for every message it delivered to be acknowledged)."""
        await self.flush()
        await self.flush(write_held=True)
        while self._in_flight:
            await asyncio.wait([self._in_flight[0]])
            self._in_flight.popleft()

    async def _finish(self, group: list, prepared: asyncio.Future, before: asyncio.Future | None) -> None:
        """Store a prepared group after the one before it, then publish its alerts and ack it."""
        if before is not None:
            await asyncio.wait([before])  # its failure is raised where it is awaited, not here
            if not before.cancelled() and before.exception() is not None:
                prepared.cancel()
                return  # stays unacknowledged: redelivered with the failed one
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self._write, self.processor.store_group, await prepared)
        for index, reason, detail in outcome.dead:
            await self._dead_letter(group[index], reason, detail)
        if outcome.alerts is not None:
            key = str(outcome.alerts.columns["institution_id"][0]).encode()
            payload = wire.encode_batch(outcome.alerts)
            await self.alerts_topic.send(key=key, value=payload, headers=self._signed(payload))
            if self.alerts_consumed_here and self.processor.progress is not None:
                self.processor.progress.offer("alert")
        self.unacked += group
        group.clear()
        if outcome.stored:
            self._ack()
        del prepared, outcome  # the group's messages, flows and alerts freed: then handed back, in the store thread
        await loop.run_in_executor(self._write, self.memory_return.after_group)

    async def _write_held(self, before: asyncio.Future | None) -> None:
        """Write the held flows after the group before (if it was stored), then ack their groups."""
        if before is not None:
            await asyncio.wait([before])
            if not before.cancelled() and before.exception() is not None:
                return
        await asyncio.get_running_loop().run_in_executor(self._write, self.processor.write_held)
        self._ack()

    def _ack(self) -> None:
        for event in self.unacked:
            event.ack()
        self.unacked.clear()

    def _signed(self, payload: bytes) -> list | None:
        """This worker's alerts are signed with the sector's key when it verifies signatures."""
        key = self.processor.verifier.service_key if self.processor.verifier is not None else None
        return sign_headers(payload, SERVICE_SIGNER, key) if key else None

    async def _dead_letter(self, event, reason: str, detail: str) -> None:
        await dead_letter(self.dlq_topic, event, reason, detail)


async def dead_letter(dlq_topic, event, reason: str, detail: str) -> None:
    """Send ``event`` to the dead-letter topic with its reason and origin in the headers."""
    DEAD_LETTERS.inc(reason=reason)
    msg = event.message
    headers = {"reason": reason.encode(), "detail": detail[:500].encode(), "topic": str(msg.topic).encode(),
               "partition": str(msg.partition).encode(), "offset": str(msg.offset).encode()}
    await dlq_topic.send(key=event.key, value=_bytes(event), headers=headers)


def _sector_agents(app: faust.App, sector: SectorStage, alerts_topic, dlq_topic, raw: dict,
                   progress_of: Callable[[], Progress | None] = lambda: None) -> None:
    """The sector picture: alerts and heartbeats in; warnings, campaigns, levels out.

    Its state is checkpointed after every alert message into a table with a changelog topic, so
    a worker restarted after a crash resumes from the last processed alert.
    """
    state = app.Table("finsa-sector-state", default=str, partitions=1)
    heartbeats = app.topic(wire.TOPICS["heartbeats"], partitions=1, **raw)
    outputs = {name: app.topic(wire.TOPICS[topic], partitions=1, **raw)
               for name, topic in (("warning", "warnings"), ("campaign", "campaigns"), ("level", "levels"),
                                   ("emergency", "emergencies"))}
    restored = {"done": False}

    async def publish(batches: dict) -> None:
        for name, batch in batches.items():
            await outputs[name].send(value=wire.encode_batch(batch))

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        await publish(await loop.run_in_executor(None, sector.tick))

    @app.agent(alerts_topic, name="sector")
    async def sector_alerts(stream):  # faust stream
        async for event in stream.events():
            if not restored["done"]:
                restored["done"] = True
                if state.get("picture"):
                    sector.restore(state["picture"])
            refused = sector.observe_alerts(_bytes(event), event.message.headers)
            if refused:
                await dead_letter(dlq_topic, event, refused, "alert batch refused by the sector stage")
            await tick()
            state["picture"] = sector.checkpoint()
            progress = progress_of()
            if progress is not None:  # the picture took it, and stored what it concluded
                progress.done("alert", 1, stored=1)

    @app.agent(heartbeats, name="sector-heartbeats")
    async def sector_heartbeats(stream):  # faust stream
        async for event in stream.events():
            refused = sector.observe_heartbeats(_bytes(event), event.message.headers)
            if refused:
                await dead_letter(dlq_topic, event, refused, "heartbeat batch refused by the sector stage")

    @app.timer(5.0)
    async def sector_tick() -> None:  # levels move on (and fall back) while no alert arrives
        if restored["done"]:
            await tick()


def _payload(event) -> bytes | bytearray:
    """A message's raw value as received (b"" when it has none), without copying it."""
    return event.value if isinstance(event.value, (bytes, bytearray)) else b""


def _bytes(event) -> bytes:
    return bytes(_payload(event))
