"""A stream worker as a service: the Faust worker plus the processor it feeds, in one event loop.

Signals belong to the finsa program that runs the service (:class:`finsa.lifecycle.Shutdown`):
the Faust worker here does not install mode's SIGTERM/SIGINT handlers, which would otherwise
replace the program's and stop Faust behind its back (the consumer stops, the program runs on).
Stopping is in two steps: :meth:`StreamService.close_intake` (fetching paused, the messages in
hand processed and stored) and :meth:`StreamService.stop` (Faust waits for what it handed out to be
acknowledged, commits, closes its Kafka clients).

>>> StreamService.__doc__.split(".")[0]
'Run a Faust worker for the flow agent inside the current asyncio loop'
"""

from __future__ import annotations

import asyncio
import gc
import logging

import faust

from finsa import allocator
from finsa.streams.faust_app import WorkerSettings, build_app
from finsa.streams.processor import FlowProcessor
from finsa.streams.progress import Progress
from finsa.streams.sector_stage import SectorStage

log = logging.getLogger("finsa.streams")


def freeze_heap() -> None:
    """Collect once, then keep every object alive now out of later collections (``gc.freeze``:
    what start-up loaded, the GeoIP tables' objects among them, is never walked again)."""
    gc.collect()
    gc.freeze()


class _Worker(faust.Worker):
    """Faust's worker without its own signal handlers (the finsa program owns SIGTERM/SIGINT)."""

    def install_signal_handlers(self) -> None:
        return None


class StreamService:
    """Run a Faust worker for the flow agent inside the current asyncio loop.

    ``start()`` returns once the worker is starting (the consumer-group join continues in the
    background); ``close_intake()`` then ``stop()`` stop it. ``progress`` counts, per kind of
    message, what was offered, processed and stored (:mod:`finsa.streams.progress`).
    """

    def __init__(self, settings: WorkerSettings, processor: FlowProcessor, sector: SectorStage | None = None,
                 progress: Progress | None = None) -> None:
        self.settings, self.processor, self.sector = settings, processor, sector
        self.progress = progress or Progress()
        processor.progress = self.progress
        self.app = build_app(settings, processor, sector)
        self._worker: faust.Worker | None = None
        self._task: asyncio.Task | None = None
        self._warm: asyncio.Future | None = None

    async def start(self) -> None:
        allocator.limit_arenas(self.settings.malloc_arenas)
        self._worker = _Worker(self.app, loglevel="WARNING", quiet=True, override_logging=False,
                               redirect_stdouts=False)
        logging.getLogger("faust").setLevel(logging.WARNING)
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
        self._task = asyncio.ensure_future(self._worker.start())
        if self.sector is not None:  # beside the consumer-group join, off the event loop
            self._warm = asyncio.get_running_loop().run_in_executor(None, self.sector.warm)
        if self.settings.gc_freeze:
            if self._warm is None:
                freeze_heap()
            else:
                self._warm.add_done_callback(lambda _: freeze_heap())

    @property
    def failed(self) -> BaseException | None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None

    @property
    def stopped(self) -> bool:
        """True when the Faust worker stopped (or crashed) while nobody asked it to."""
        return self._task is not None and (self.failed is not None or bool(self.app.should_stop))

    def close_intake(self) -> None:
        """Fetch nothing more: the partitions are paused and the streams stop taking buffered
        messages (never delivered, so never acknowledged: whoever consumes next gets them). What
        the agents hold goes on through detection and storage."""
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return
        try:
            assignment = consumer.assignment()
        except Exception:  # noqa: BLE001 - not started yet (ConsumerNotStarted): nothing to pause
            return
        self.app.flow_control.suspend()
        if assignment:
            consumer.pause_partitions(assignment)

    async def stop(self, timeout_s: float = 10.0, wait_for_streams: bool = True) -> None:
        """Stop the Faust worker (consumer and producer closed), at most ``timeout_s``. Without
        ``wait_for_streams`` (a drain cut short, or a second signal) Faust does not wait for the
        messages it handed out to be acknowledged: they stay uncommitted and are delivered again."""
        if not wait_for_streams:
            self.app.conf.stream_wait_empty = False
        grouper = getattr(self.app, "finsa_grouper", None)
        if wait_for_streams and grouper is not None and self._worker is not None:
            try:  # the flow groups pending or in flight are stored and acknowledged first
                await asyncio.wait_for(grouper.drain(), timeout_s)
            except asyncio.TimeoutError:
                log.warning("the flow groups in hand were not stored within %.0f s", timeout_s)
            except Exception as exc:  # noqa: BLE001 - a failed group stays unacknowledged: redelivered
                log.warning("a flow group failed while stopping: %s", exc)
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._worker.stop(), timeout_s)
            except asyncio.TimeoutError:
                log.warning("the Faust worker did not stop within %.0f s", timeout_s)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        self._worker = self._task = None
