"""``python -m bench panels``: dashboard panels under 10 concurrent users, with and without the cache.

A store is loaded as in ``bench storage`` (``--flows`` synthetic flows over 24 h, every roll-up
view on, alerts and the sector tables). Ten users (five regulators reading the whole sector,
five institution analysts, one per institution) each load the whole web page (every panel of
``WEB_PANELS``, "the last hour" ending at the data's end and moving with the clock) ``rounds``
times, all at once, through :class:`~finsa.dashboards.reads.PanelReads` (tenancy and audit
included). The same load runs twice in the same process on the same store: *uncached*
(``PanelReads``) and *cached* (:class:`~finsa.dashboards.panel_cache.PanelCache`, 10 s buckets).
Reported: wall ms per panel request, p50/p95/max over every request and the slowest panel's
p95, and for the cache its hit rate, hits (from memory), joined reads (waited for another
user's query of the same key) and misses apart, for every request and apart for the whole-sector users
and the institution users. The store is idle during the load (no ingest): under ingest, entries
of the tables being written are invalidated at every write.

``--store DIR`` reuses a store kept on disk (:mod:`bench.bigstore`; filled with ``--flows``
flows the first time): ``python -m bench panels --store /work/bigstore --flows 100000000``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time

import numpy as np

from bench.flows import INSTITUTIONS, START_MS
from bench.report import grid
from bench.storage import DAY_MS, _groups, _settle, flow_batches, synthetic_alerts
from bench.storage_fill import fill_small_tables

__all__ = ["run"]

HOUR_MS = 3_600_000


def _users() -> list:
    from finsa.dashboards.users import User, hash_password

    secret = hash_password("bench", n=2048)
    users = [User(username=f"reg{i}", role="regulator", password_hash=secret) for i in range(5)]
    users += [User(username=f"ana{i}", role="institution", institution=INSTITUTIONS[i], password_hash=secret)
              for i in range(5)]
    return users


def _load(store, users: list, rounds: int, reader) -> tuple[dict[str, list[float]], float]:
    """Every user reads every panel ``rounds`` times, all users at once: wall ms by panel id."""
    from finsa.dashboards.panels import WEB_PANELS, bind
    from finsa.dashboards.reads import Forbidden

    end_ms = START_MS + DAY_MS
    times: dict[str, list[float]] = {p.id: [] for p in WEB_PANELS}
    kinds = {"regulator": "@sector", "institution": "@institution"}
    lock = threading.Lock()
    t0 = time.monotonic()

    def user_loop(user) -> None:
        for _ in range(rounds):
            now_ms = end_ms + int((time.monotonic() - t0) * 1000)
            for panel in WEB_PANELS:
                params = bind(panel, {"from_ms": str(now_ms - HOUR_MS), "to_ms": str(now_ms)}, now_ms)
                started = time.perf_counter()
                try:
                    reader.read(user, panel, params)
                except Forbidden:
                    continue  # panels an institution is not shown
                elapsed_ms = (time.perf_counter() - started) * 1000
                outcome = getattr(getattr(reader, "last", None), "outcome", "")
                with lock:
                    times[panel.id].append(elapsed_ms)
                    times.setdefault(kinds[user.role], []).append(elapsed_ms)
                    if outcome:
                        times.setdefault(f"_{outcome}", []).append(elapsed_ms)
                        times.setdefault(f"_{outcome}{kinds[user.role]}", []).append(elapsed_ms)

    threads = [threading.Thread(target=user_loop, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, time.monotonic() - t0


def _row(name: str, times: dict[str, list[float]], wall_s: float, extra: str) -> list[str]:
    every = np.concatenate([np.asarray(v) for k, v in times.items() if v and not k.startswith(("_", "@"))])
    worst = max(((np.percentile(v, 95), k) for k, v in times.items() if v and not k.startswith(("_", "@"))))
    return [name, f"{len(every):,}", f"{np.percentile(every, 50):,.1f}", f"{np.percentile(every, 95):,.1f}",
            f"{every.max():,.1f}", f"{worst[1]} {worst[0]:,.1f}", f"{len(every) / wall_s:,.1f}", extra]


def _split(label: str, times: dict[str, list[float]], wall_s: float, prefix: str = "@") -> list[list[str]]:
    """Rows of the whole-sector and the institution users' requests apart."""
    return [_row(f"{label}, {kind}", {kind: times[f"{prefix}{kind}"]}, wall_s, "")
            for kind in ("sector", "institution") if times.get(f"{prefix}{kind}")]


def _measure(store, rounds: int) -> list[list[str]]:
    from finsa.dashboards.panel_cache import LOOKUPS, PanelCache
    from finsa.dashboards.reads import PanelReads

    rows = []
    users = _users()
    times, wall_s = _load(store, users, rounds, PanelReads(store))
    rows += [_row("uncached (PanelReads)", times, wall_s, "")] + _split("uncached", times, wall_s)
    before = {o: LOOKUPS.value(outcome=o) for o in ("hit", "miss", "joined")}
    cache = PanelCache(PanelReads(store))
    try:
        times, wall_s = _load(store, users, rounds, cache)
    finally:
        getattr(cache, "close", lambda: None)()
    got = {o: LOOKUPS.value(outcome=o) - before[o] for o in before}
    rows.append(_row("cached (PanelCache), all", times, wall_s,
                     f"hits {got['hit']:,.0f}, misses {got['miss']:,.0f}, joined {got['joined']:,.0f}"))
    labels = {"hit": "cached: hits only", "joined": "cached: joined another's query", "miss": "cached: misses only"}
    for outcome, label in labels.items():
        if times.get(f"_{outcome}"):
            rows.append(_row(label, {outcome: times[f"_{outcome}"]}, wall_s, ""))
            rows += _split(label, times, wall_s, prefix=f"_{outcome}@")
    return rows


def run(quick: bool, flows: int | None = None, rounds: int | None = None, store_dir: str = "") -> list[str]:
    """The table; ``rounds`` page loads per user (default 5, 2 with ``quick``)."""
    from finsa.storage.backend import open_store

    n = flows or (200_000 if quick else 2_000_000)
    rounds = rounds or (2 if quick else 5)
    if store_dir:
        from bench.bigstore import filled_store

        with filled_store(store_dir, n) as store:
            rows = _measure(store, rounds)
    else:
        folder = tempfile.mkdtemp(prefix="finsa-bench-panels-")
        try:
            with open_store(data_dir=folder) as store:
                store.migrate()
                for group in _groups(flow_batches(n, 100_000), 5):
                    store.insert_many(group)
                store.insert(synthetic_alerts(max(1, n // 1000)))
                fill_small_tables(store)
                _settle(store)
                rows = _measure(store, rounds)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    head = ["reads", "requests", "p50 ms", "p95 ms", "max ms", "slowest panel p95 ms", "requests/s", "cache"]
    return [f"panels: 10 concurrent users (5 whole sector, 5 institutions), every web panel, last hour, {rounds} "
            f"rounds; {n:,} flows over 24 h, wall ms per request\n" + grid(head, rows)]
