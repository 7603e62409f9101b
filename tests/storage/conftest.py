"""Store fixtures: every backend test runs on chdb in process and on the clickhouse-connect
backend talking, over real HTTP on loopback, to the ClickHouse endpoint served from chdb."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from finsa.storage.backend import Store, open_store
from finsa.storage.chdb_backend import ChdbStore
from finsa.storage.clickhouse_http import ClickHouseHTTPEndpoint
from finsa.wire import ALERT, FLOW, RecordBatch


# One chdb engine per test module (chdb allows one engine path per process at a time; module
# scope releases it before another module opens its own). Each test gets a fresh database in it,
# so tests stay isolated without paying for a new engine and a new HTTP client every time.


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> ChdbStore:
    backing = ChdbStore(tmp_path_factory.mktemp("engine"), database="default")
    yield backing
    backing.close()


@pytest.fixture(scope="module")
def endpoint(engine) -> ClickHouseHTTPEndpoint:
    served = ClickHouseHTTPEndpoint(engine).start()
    yield served
    served.stop()


def _open(kind: str, engine: ChdbStore, endpoint: ClickHouseHTTPEndpoint) -> Store:
    database = f"t_{uuid.uuid4().hex[:12]}"
    if kind == "chdb":
        return open_store(data_dir=engine.data_dir, database=database)
    return open_store(url=f"http://default:@127.0.0.1:{endpoint.port}", database=database)


def _drop(store: Store, engine: ChdbStore) -> None:
    database = store.database
    store.close()
    engine.command(f"DROP DATABASE IF EXISTS {database} SYNC")


BACKENDS = ["chdb", pytest.param("server", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def store(request, engine, endpoint) -> Store:
    """A fresh, empty (not migrated) store on each backend."""
    opened = _open(request.param, engine, endpoint)
    yield opened
    _drop(opened, engine)


@pytest.fixture(scope="module", params=BACKENDS)
def _shared(request, engine, endpoint) -> Store:
    opened = _open(request.param, engine, endpoint)
    opened.migrate()
    yield opened
    _drop(opened, engine)


@pytest.fixture
def migrated(_shared) -> Store:
    """A migrated store on each backend, emptied before the test."""
    for table in ("flows", "alerts", "heartbeats", "institutions", "flows_1m", "ingested_batches"):
        _shared.command(f"TRUNCATE TABLE {table}")
    return _shared


def now_ms() -> int:
    return int(time.time() * 1000)


def flow_batch(n: int = 50, start_ms: int | None = None, institution: str = "bank-a") -> RecordBatch:
    start_ms = now_ms() if start_ms is None else start_ms
    i = np.arange(n)
    return FLOW.make_batch({
        "flow_id": i + 1, "first_seen_ms": start_ms + i * 1000, "last_seen_ms": start_ms + i * 1000 + 250,
        "institution_id": [institution] * n, "sensor_id": ["s1"] * n, "ip_version": np.where(i % 2, 6, 4),
        "protocol": [6] * n,
        "src_ip": [f"10.0.{k // 256}.{k % 256}" if k % 2 == 0 else f"2001:db8::{k:x}" for k in range(n)],
        "dst_ip": ["192.0.2.7"] * n, "src_port": 40000 + i, "dst_port": [443] * n,
        "src2dst_packets": i + 1, "src2dst_bytes": (i + 1) * 100, "dst2src_packets": i, "dst2src_bytes": i * 1000,
        "tls_sni": [f"h{k}.example.com" if k % 3 else "" for k in range(n)],
        "dns_query": ["bücher.example"] * n, "http_uri": ["/a'b\\c\n"] * n,
    })


def alert_batch(alert_ids: list[str], time_ms: int | None = None) -> RecordBatch:
    n = len(alert_ids)
    time_ms = now_ms() if time_ms is None else time_ms
    return ALERT.make_batch({
        "alert_id": alert_ids, "time_ms": [time_ms] * n, "first_seen_ms": [time_ms - 60_000] * n,
        "institution_id": ["bank-a"] * n, "entity": ["203.0.113.9"] * n, "entity_kind": ["src_ip"] * n,
        "target": ["10.0.0.1:22"] * n, "detector": ["portscan"] * n, "technique": ["T1046"] * n,
        "severity": [4] * n, "score": [12.5] * n, "confidence": [0.9] * n,
        "evidence": ['{"flows": [1, 2]}'] * n,
    })


@pytest.fixture
def make_flows():
    return flow_batch


@pytest.fixture
def make_alerts():
    return alert_batch
