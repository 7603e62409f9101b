"""finsa.storage.cluster (finsa storage migrate --cluster): the cluster DDL parses, creates on the embedded engine, and works.

Replicated engines need a Keeper: here ClickHouse's in-memory test keeper stands in for one, and
only CREATE is run with it (inserts into Replicated tables do not complete in process). The
data path (Distributed over local tables, views, dedup tokens) runs on the plain equivalent.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from finsa.errors import StorageError
from finsa.storage import cluster
from finsa.storage.migrations import table_steps
from tests.conftest import REPO

PROBE = REPO / "tests" / "deploy" / "cluster_probe.py"
ONE_NODE = """<clickhouse>
  <tcp_port>9000</tcp_port>
  <remote_servers><finsa><shard><replica><host>localhost</host><port>9000</port></replica></shard></finsa></remote_servers>
  <macros><shard>01</shard><replica>ch-s1r1</replica></macros>
  <zookeeper><implementation>testkeeper</implementation></zookeeper>
</clickhouse>
"""


def _probe(tmp_path, *args: str) -> dict:
    config = tmp_path / "one-node.xml"
    config.write_text(ONE_NODE)
    done = subprocess.run([sys.executable, str(PROBE), args[0], str(config), *args[1:]], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_statement_parses_with_on_cluster(tmp_path) -> None:
    found = _probe(tmp_path, "parse")
    assert found["statements"] == len(cluster.cluster_statements("finsa")) == found["on_cluster"]


def test_replicated_statements_create_every_table(tmp_path) -> None:
    tables = _probe(tmp_path, "replicated")["tables"]
    created = {s.version.split("_create_", 1)[1] for s in table_steps() if "_create_" in s.version}
    assert created <= set(tables)  # every single-node name exists, so the worker's migrate() is a no-op
    for name in cluster.SHARDING_KEYS:
        assert tables[name] == "Distributed" and tables[f"{name}_local"].startswith("Replicated"), name
    for name in cluster.GLOBAL_TABLES:
        assert tables[name].startswith("Replicated") and f"{name}_local" not in tables


def test_plain_equivalent_writes_once_through_distributed_tables(tmp_path) -> None:
    found = _probe(tmp_path, "plain", str(tmp_path / "store"))
    assert found["migrate_applied"] == []
    assert found["written"] == [True, False, True, False]
    assert found["flows"] == found["flows_local"] == found["flows_1m"] == 40
    assert found["alerts"] == found["alerts_1m"] == 3
    assert found["engines"] == {"flows": "Distributed", "flows_local": "MergeTree"}


def test_views_read_and_write_local_tables() -> None:
    views = [s for s in cluster.cluster_statements("finsa", database="fin") if "MATERIALIZED VIEW" in s]
    assert views and all(" TO fin." in v and "_local AS" in v for v in views)
    # every view reads a local raw table, or (flows_1h, a cascade) the local minute roll-up
    assert all(any(f"FROM fin.{t}_local" in v for t in ("flows", "alerts", "flows_1m")) for v in views)
    assert any("FROM fin.flows_1m_local" in v and "TO fin.flows_1h_local" in v for v in views)
    assert any("FROM fin.flows_local" in v and "TO fin.talkers_top_1d_local" in v for v in views)
    joined = [v for v in views if " JOIN " in v]
    assert joined and all("JOIN fin.institutions " in v for v in joined)


def test_replicated_dedup_setting_and_paths() -> None:
    sql = "\n".join(cluster.cluster_statements("finsa"))
    assert "non_replicated_deduplication_window" not in sql and "replicated_deduplication_window" in sql
    assert "'/clickhouse/tables/{shard}/finsa/flows_local', '{replica}'" in sql
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/finsa/campaigns_local', '{replica}', last_seen_ms)" in sql
    assert "'/clickhouse/tables/all/finsa/institutions', '{replica}'" in sql


def test_a_new_table_must_be_placed(monkeypatch) -> None:
    monkeypatch.setattr(cluster, "single_node_statements", lambda *a, **k: [
        "CREATE TABLE IF NOT EXISTS newtable (\n    x UInt8\n) ENGINE = MergeTree ORDER BY x"])
    with pytest.raises(StorageError, match="newtable"):
        cluster.cluster_statements("finsa")


def test_missing_columns_are_added_to_local_then_distributed() -> None:
    def existing(table: str) -> list[str]:
        if table == "flows_local":
            return ["flow_id", "first_seen_ms"]  # every later column is missing
        return []

    sql = cluster.column_statements(existing, "finsa")
    assert sql[0].startswith("ALTER TABLE finsa.flows_local ON CLUSTER finsa ADD COLUMN IF NOT EXISTS last_seen_ms")
    assert sql[1].startswith("ALTER TABLE finsa.flows ON CLUSTER finsa ADD COLUMN IF NOT EXISTS last_seen_ms")
    assert " AFTER first_seen_ms" in sql[0]
    assert all("flows" in s for s in sql)


def test_print_command(capsys) -> None:
    from finsa.app.cli import main as finsa

    assert finsa(["storage", "migrate", "--cluster", "finsa", "--print"]) == 0
    assert capsys.readouterr().out.count(" ON CLUSTER finsa") == len(cluster.cluster_statements("finsa"))
    assert finsa(["storage", "migrate", "--cluster", "bad name", "--print"]) == 1
    assert finsa(["storage", "migrate", "--print"]) == 1  # --print is the cluster DDL's
    assert finsa(["storage", "migrate", "--cluster", "finsa", "--data-dir", "x"]) == 1  # a cluster is a server


def test_module_doctests() -> None:
    import doctest

    assert doctest.testmod(cluster).failed == 0
