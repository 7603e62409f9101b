"""Freed memory handed back after each stored group (issue 17, the soak): the store engine's
dirty pages and glibc's free pages, at most once per interval, a failure never failing the group;
a group bounded in bytes as well as in messages."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace

import pytest

from finsa import allocator
from finsa.errors import ConfigError, StorageError
from finsa.storage.chdb_backend import ChdbStore
from finsa.streams.faust_app import WorkerSettings, _Grouper
from finsa.streams.memory_return import RETURN_ERRORS, RETURNS, MemoryReturn
from finsa.streams.processor import GroupOutcome


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_memory_is_returned_at_most_once_per_interval(monkeypatch) -> None:
    trims, releases, clock = [], [], _Clock()
    monkeypatch.setattr(allocator, "trim", lambda: trims.append(1) or True)
    back = MemoryReturn(trim_glibc=True, release_store=lambda: releases.append(1), min_interval_s=5.0, clock=clock)
    before = RETURNS.value(allocator="glibc")
    done = []
    for step_s in (0.0, 1.0, 1.0, 3.0, 0.5, 5.0):
        clock.now += step_s
        done.append(back.after_group())
    assert done == [True, False, False, True, False, True]  # t = 100, 105, 110.5
    assert len(trims) == len(releases) == 3
    assert RETURNS.value(allocator="glibc") - before == 3
    assert MemoryReturn(trim_glibc=False, release_store=None).after_group() is False  # nothing to return


def test_a_failed_release_is_counted_and_does_not_fail_the_group() -> None:
    def closed() -> None:
        raise StorageError("the store is closed")

    before = RETURN_ERRORS.value(allocator="jemalloc")
    assert MemoryReturn(trim_glibc=False, release_store=closed).after_group() is True
    assert RETURN_ERRORS.value(allocator="jemalloc") - before == 1
    with pytest.raises(ValueError, match="min_interval_s"):
        MemoryReturn(False, None, min_interval_s=-1)


def _dirty_pages(store: ChdbStore) -> int:
    """Dirty pages of every jemalloc arena (the merged ``decaying: dirty`` line of the stats)."""
    text = str(store.query("SELECT * FROM system.jemalloc_stats").rows[0][0])
    found = re.search(r"decaying:\s+time\s+npages.*?dirty:\s+\S+\s+(\d+)", text, re.DOTALL)
    assert found is not None, "no dirty pages in chdb's jemalloc statistics"
    return int(found.group(1))


def test_the_chdb_store_purges_its_jemalloc_dirty_pages() -> None:
    store = ChdbStore(None)
    try:
        store.query("SELECT count() FROM (SELECT groupArray(number) AS a FROM numbers(3000000))")
        dirty = _dirty_pages(store)  # the array freed: ~24 MB, decaying over jemalloc's 5 s
        assert store.release_memory() is True
        assert _dirty_pages(store) < max(dirty // 4, 64)
    finally:
        store.close()


class _Counting:
    """A processor recording the size of each group it stores, and when memory was returned."""

    progress = verifier = None

    def __init__(self, log: list) -> None:
        self.log = log

    def prepare_group(self, payloads, headers):
        return len(payloads)

    def store_group(self, n: int) -> GroupOutcome:
        self.log.append(("stored", n))
        return GroupOutcome()


def test_a_group_is_bounded_in_bytes_and_memory_is_returned_after_each_write() -> None:
    log: list = []
    back = MemoryReturn(trim_glibc=False, release_store=lambda: log.append(("returned", 0)))
    grouper = _Grouper(_Counting(log), None, None, group_max=64, group_max_bytes=1000, memory_return=back)

    async def main() -> None:
        for _ in range(7):  # 400 bytes each: a group is full at the third (1,200 >= 1,000)
            await grouper.add(SimpleNamespace(value=b"x" * 400, message=SimpleNamespace(headers=None),
                                              ack=lambda: None))
        await grouper.drain()

    asyncio.run(main())
    assert log == [("stored", 3), ("returned", 0), ("stored", 3), ("returned", 0), ("stored", 1), ("returned", 0)]


def test_worker_settings_refuse_bounds_that_cannot_work() -> None:
    with pytest.raises(ConfigError) as refused:
        WorkerSettings("127.0.0.1:9", group_max_bytes=0, return_min_interval_s=-1, group_max=0)
    assert [p.split(":")[0] for p in refused.value.problems] == ["group_max", "group_max_bytes", "return_min_interval_s"]


def test_freeze_heap_keeps_start_up_objects_out_of_collections_not_later_garbage() -> None:
    import gc
    import weakref

    from finsa.streams.service import freeze_heap

    class Node:
        pass

    try:
        freeze_heap()  # what a worker does once start-up is done (WorkerSettings.gc_freeze)
        assert gc.get_freeze_count() > 0
        later = Node()
        later.self = later  # a cycle made after the freeze: the collector still finds it
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
