"""Storage briefly unavailable, on both backends: the worker's write blocks and retries (so no
offset moves on), and once storage is back the batch lands exactly once."""

from __future__ import annotations

import threading
import time

import pytest

from finsa.errors import StorageError
from finsa.storage.clickhouse_http import ClickHouseHTTPEndpoint
from finsa.streams.processor import STORE_RETRIES, FlowProcessor
from tests.fakes import NoDetect
from tests.storage.conftest import BACKENDS, _open, flow_batch


class _Outage:
    """Makes a store's writes fail while ``down`` is set (for chdb, where no server can be stopped)."""

    def __init__(self, store) -> None:
        self.store, self.down = store, threading.Event()

    def insert_many(self, batches):
        if self.down.is_set():
            raise StorageError("storage unavailable (injected)")
        return self.store.insert_many(batches)


@pytest.mark.parametrize("backend", BACKENDS)
def test_writes_block_while_storage_is_away_then_land_once(backend, engine) -> None:
    from finsa import wire

    outage_endpoint = ClickHouseHTTPEndpoint(engine).start()  # this test's own server, to stop it
    store = _open(backend, engine, outage_endpoint)
    store.migrate()
    target = _Outage(store) if backend == "chdb" else store
    batch = flow_batch(40)
    processor = FlowProcessor(target, NoDetect(), max_backoff_s=0.2)
    retries_before = STORE_RETRIES.total()
    port = outage_endpoint.port
    if backend == "chdb":
        target.down.set()
    else:
        outage_endpoint.stop()
    done = threading.Event()
    worker = threading.Thread(target=lambda: (processor.process(wire.encode_batch(batch)), done.set()), daemon=True)
    worker.start()
    time.sleep(1.5)
    assert not done.is_set(), "the write returned while storage was away: its offset could be committed"
    assert STORE_RETRIES.total() > retries_before
    if backend == "chdb":
        target.down.clear()
    else:
        outage_endpoint = ClickHouseHTTPEndpoint(engine, port=port).start()
    worker.join(30)
    try:
        assert done.is_set() and processor.batches == 1
        assert processor.process(wire.encode_batch(batch)).flows == 40  # redelivered: skipped by storage
        assert store.query("SELECT count() FROM flows").rows[0][0] == 40
    finally:
        store.close()
        engine.command(f"DROP DATABASE IF EXISTS {store.database} SYNC")
        outage_endpoint.stop()
