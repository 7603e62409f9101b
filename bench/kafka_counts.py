"""What the worker's Kafka client did during a bench run: fetch requests, fetched record sets and
their bytes, offset commits (``with KafkaCounts() as counts: ...``).

The counts come from wrapping three methods of aiokafka and Faust's aiokafka driver in this
process only, for the duration of the ``with`` block: ``Fetcher._proc_fetch_request`` (one fetch
request to a broker, all partitions), ``PartitionRecords.__init__`` (one partition's records in
a fetch response, with its size in bytes) and ``AIOKafkaConsumerThread._commit`` (one offset
commit). The wrappers only count; they change nothing.

>>> with KafkaCounts() as counts:
...     pass
>>> counts.fetches, counts.record_sets, counts.fetched_bytes, counts.commits
(0, 0, 0, 0)
"""

from __future__ import annotations

import functools
from typing import Any


class KafkaCounts:
    """Fetch requests, record sets and bytes fetched, offset commits."""

    def __init__(self) -> None:
        self.fetches = self.record_sets = self.fetched_bytes = self.commits = 0
        self._undo: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> "KafkaCounts":
        from aiokafka.consumer import fetcher
        from faust.transport.drivers import aiokafka as driver

        def fetch_wrap(orig):
            @functools.wraps(orig)
            async def counted(*args, **kwargs):
                self.fetches += 1
                return await orig(*args, **kwargs)
            return counted

        def records_wrap(orig):
            @functools.wraps(orig)
            def counted(obj, tp, records, *args, **kwargs):
                self.record_sets += 1
                self.fetched_bytes += records.size_in_bytes() if hasattr(records, "size_in_bytes") else 0
                return orig(obj, tp, records, *args, **kwargs)
            return counted

        def commit_wrap(orig):
            @functools.wraps(orig)
            async def counted(*args, **kwargs):
                self.commits += 1
                return await orig(*args, **kwargs)
            return counted

        for owner, name, wrap in ((fetcher.Fetcher, "_proc_fetch_request", fetch_wrap),
                                  (fetcher.PartitionRecords, "__init__", records_wrap),
                                  (driver.AIOKafkaConsumerThread, "_commit", commit_wrap)):
            orig = owner.__dict__[name]
            self._undo.append((owner, name, orig))
            setattr(owner, name, wrap(orig))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, orig in reversed(self._undo):
            setattr(owner, name, orig)
        self._undo.clear()
