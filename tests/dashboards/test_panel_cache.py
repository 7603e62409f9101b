"""The panel result cache: hits while the panel's tables are unchanged, a miss after new data,
per principal, time buckets, single flight, and every read (hit or miss) audited."""

from __future__ import annotations

import threading

import numpy as np

from finsa.dashboards.panel_cache import PanelCache
from finsa.dashboards.panels import WEB_PANELS_BY_ID, bind
from finsa.dashboards.reads import PanelReads
from finsa.dashboards.users import User, hash_password
from finsa.wire import FLOW

_HASH = hash_password("x", n=2048)
REGULATOR = User(username="reg", role="regulator", password_hash=_HASH)
ANALYST = User(username="ana", role="institution", institution="bank-a", password_hash=_HASH)


class CountingReads(PanelReads):
    def __init__(self, store) -> None:
        super().__init__(store)
        self.runs = 0

    def read(self, user, panel, params):
        self.runs += 1
        return super().read(user, panel, params)


def _audit_rows(store) -> int:
    return store.query("SELECT count() FROM audit_log").rows[0][0]


def test_hits_until_new_data_and_every_read_audited(store, sector) -> None:
    reads = CountingReads(store)
    cache = PanelCache(reads, check_s=0.0)
    panel = WEB_PANELS_BY_ID["traffic_per_minute"]
    params = bind(panel, {"from_ms": str(sector.now_ms - 3_600_000), "to_ms": str(sector.now_ms)}, sector.now_ms)
    audits = _audit_rows(store)
    first = cache.read(REGULATOR, panel, params)
    again = cache.read(REGULATOR, panel, {**params, "to_ms": params["to_ms"] - 1})  # same 10 s bucket
    assert reads.runs == 1 and again.rows == first.rows
    cache.audit.flush()  # the hit's row is queued off the request path
    assert _audit_rows(store) == audits + 2
    cache.read(ANALYST, panel, params)  # another principal: its own entry
    assert reads.runs == 2
    store.insert(FLOW.make_batch({"src_ip": ["10.1.0.9"], "dst_ip": ["192.0.2.1"], "institution_id": ["bank-a"],
                                  "first_seen_ms": [sector.now_ms - 60_000], "last_seen_ms": [sector.now_ms - 59_000],
                                  "src2dst_bytes": [1000], "src2dst_packets": [1], "protocol": [6]}))
    after = cache.read(REGULATOR, panel, params)
    assert reads.runs == 3
    assert sum(r[list(after.columns).index("bytes")] for r in after.rows) > \
        sum(r[list(first.columns).index("bytes")] for r in first.rows) or after.rows != first.rows


def test_concurrent_misses_run_one_query(store, sector) -> None:
    reads = CountingReads(store)
    cache = PanelCache(reads, check_s=60.0)
    panel = WEB_PANELS_BY_ID["latest_alerts"]
    params = bind(panel, {"from_ms": str(sector.now_ms - 3_600_000), "to_ms": str(sector.now_ms)}, sector.now_ms)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.read(REGULATOR, panel, params))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert reads.runs == 1 and len(results) == 6 and len({tuple(map(tuple, r.rows)) for r in results}) == 1


def test_refused_reads_are_not_cached(store, sector) -> None:
    from finsa.dashboards.reads import Forbidden

    cache = PanelCache(CountingReads(store))
    panel = WEB_PANELS_BY_ID["latest_alerts"]
    params = bind(panel, {"institution": "ins-c"}, sector.now_ms)
    for _ in range(2):
        try:
            cache.read(ANALYST, panel, params)
        except Forbidden:
            pass
        else:
            raise AssertionError("another institution's read must be refused")
    assert cache.reads.runs == 2 and not np.any([k[2] == panel.id for k in cache._entries])


def test_a_hit_does_not_wait_for_the_store_lock(store, sector) -> None:
    reads = CountingReads(store)
    cache = PanelCache(reads, check_s=3600.0)
    panel = WEB_PANELS_BY_ID["traffic_per_minute"]
    params = bind(panel, {"from_ms": str(sector.now_ms - 3_600_000), "to_ms": str(sector.now_ms)}, sector.now_ms)
    reader_user = User(username="reg-lock", role="regulator", password_hash=_HASH)
    first = cache.read(reader_user, panel, params)  # the miss: its row written before it was answered
    held, answered, release = threading.Event(), threading.Event(), threading.Event()

    def busy() -> None:
        with store._lock:  # a slow panel query of another user holds the embedded store
            held.set()
            release.wait(30.0)

    holder = threading.Thread(target=busy)
    holder.start()
    held.wait(10.0)
    got = []
    reader = threading.Thread(target=lambda: (got.append(cache.read(reader_user, panel, params)), answered.set()))
    reader.start()
    answered.wait(10.0)
    was_answered = answered.is_set()
    release.set()
    holder.join()
    reader.join()
    assert was_answered and got[0].rows == first.rows and reads.runs == 1
    cache.close()  # writes the hit's audit row
    rows = store.query("SELECT count() FROM audit_log WHERE position(parameters, '\"reg-lock\"') > 0").rows
    assert rows == [(2,)]
