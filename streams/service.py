"""A stream worker as a service: the Faust worker plus the processor it feeds, in one event loop.

>>> StreamService.__doc__.split(".")[0]
'Run a Faust worker for the flow agent inside the current asyncio loop'
"""

from __future__ import annotations

import asyncio
import logging

import faust

from finsa.streams.faust_app import WorkerSettings, build_app
from finsa.streams.processor import FlowProcessor
from finsa.streams.sector_stage import SectorStage


class StreamService:
    """Run a Faust worker for the flow agent inside the current asyncio loop.

    ``start()`` returns once the worker is starting (the consumer-group join continues in the
    background); ``stop()`` stops it and waits.
    """

    def __init__(self, settings: WorkerSettings, processor: FlowProcessor, sector: SectorStage | None = None) -> None:
        self.settings, self.processor, self.sector = settings, processor, sector
        self.app = build_app(settings, processor, sector)
        self._worker: faust.Worker | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._worker = faust.Worker(self.app, loglevel="WARNING", quiet=True, override_logging=False,
                                    redirect_stdouts=False)
        logging.getLogger("faust").setLevel(logging.WARNING)
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
        self._task = asyncio.ensure_future(self._worker.start())

    @property
    def failed(self) -> BaseException | None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return self._task.exception()
        return None

    async def stop(self) -> None:
        if self._worker is not None:
            await self._worker.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        self._worker = self._task = None
