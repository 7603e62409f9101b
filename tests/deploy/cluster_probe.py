"""Run finsa's cluster DDL on the embedded engine (chdb) in a child process; print JSON.

    python tests/deploy/cluster_probe.py parse|replicated|plain CONFIG.xml

* ``parse``: every cluster statement (ON CLUSTER, Replicated engines) through ``formatQuery``.
* ``replicated``: every statement without ``ON CLUSTER`` executed against a one-node cluster
  whose Keeper is ClickHouse's in-memory test keeper (CREATE only: inserts into Replicated
  tables do not complete in process).
* ``plain``: the non-replicated equivalent (same names, same Distributed tables over the cluster)
  executed, then a finsa Store on it: migrate() finds nothing to create, flow and alert batches
  written twice through the Distributed tables land once, the roll-ups see them.

A child process because chdb runs one engine per process and its test keeper aborts at exit
(the probe leaves with os._exit after printing).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import chdb.session

from finsa.storage.backend import Store
from finsa.storage.chdb_backend import ChdbStore
from finsa.storage.cluster import cluster_statements


_KEEP: list[object] = []  # sessions stay open until os._exit: closing one with a test keeper hangs


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse() -> dict:
    session = chdb.session.Session()
    formatted = [str(session.query(f"SELECT formatQuery({_quote(s)})", "TSV")) for s in cluster_statements("finsa")]
    return {"statements": len(formatted), "on_cluster": sum("ON CLUSTER finsa" in f for f in formatted)}


def replicated(config: str) -> dict:
    session = chdb.session.Session(f":memory:?config-file={config}")
    _KEEP.append(session)
    for sql in cluster_statements("finsa"):
        session.query(sql.replace(" ON CLUSTER finsa", ""), "TSV")
    rows = str(session.query("SELECT name, engine FROM system.tables WHERE database = 'finsa' ORDER BY name",
                             "JSONCompact"))
    return {"tables": dict(json.loads(rows)["data"])}


def _store_on(session: object) -> Store:
    store = ChdbStore.__new__(ChdbStore)
    Store.__init__(store, "finsa")
    store.data_dir, store._session = None, session
    session.query("USE finsa", "TSV")
    return store


def plain(config: str, workdir: str) -> dict:
    from tests.storage.conftest import alert_batch, flow_batch

    session = chdb.session.Session(f"{workdir}?config-file={config}")
    _KEEP.append(session)
    for sql in cluster_statements("finsa", plain=True):
        session.query(sql, "TSV")
    store = _store_on(session)
    applied = store.migrate()
    flows, alerts = flow_batch(40), alert_batch(["a1", "a2", "a3"])
    written = [store.insert(flows), store.insert(flows), store.insert(alerts), store.insert(alerts)]
    count = store.query
    return {
        "migrate_applied": applied, "written": written,
        "flows": count("SELECT count() FROM flows").rows[0][0],
        "flows_local": count("SELECT count() FROM flows_local").rows[0][0],
        "flows_1m": count("SELECT sum(flows) FROM flows_1m").rows[0][0],
        "alerts": count("SELECT count() FROM alerts FINAL").rows[0][0],
        "alerts_1m": count("SELECT uniqExactMerge(alerts) FROM alerts_1m").rows[0][0],
        "engines": dict(count("SELECT name, engine FROM system.tables WHERE database = 'finsa' "
                              "AND name IN ('flows', 'flows_local')").rows),
    }


def main() -> None:
    mode = sys.argv[1]
    result = {"parse": lambda: parse(), "replicated": lambda: replicated(sys.argv[2]),
              "plain": lambda: plain(sys.argv[2], sys.argv[3])}[mode]()
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
