"""``finsa query`` and ``finsa storage`` through finsa.app.cli.main on a temporary data directory."""

from __future__ import annotations

import json
import time

import pytest

from finsa.app.cli import main
from finsa.institutions import parse_registry
from finsa.storage.backend import open_store
from finsa.wire import FLOW


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "store"
    assert main(["storage", "migrate", "--data-dir", str(path)]) == 0
    now = int(time.time() * 1000)
    with open_store(data_dir=path) as store:
        store.insert(FLOW.make_batch({"flow_id": [1, 2], "first_seen_ms": [now, now], "src_ip": ["10.0.0.1", "::1"],
                                      "institution_id": ["bank-a", "bank-b"]}))
    return path


def test_migrate_prints_applied_then_skipped(data_dir, capsys):
    capsys.readouterr()
    assert main(["storage", "migrate", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "skipped  0002_create_flows" in out and "applied" not in out.replace("0 applied", "")


def test_query_formats(data_dir, capsys):
    capsys.readouterr()
    sql = "SELECT flow_id, src_ip, institution_id FROM flows ORDER BY flow_id"
    assert main(["query", "--data-dir", str(data_dir), sql]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["flow_id", "src_ip", "institution_id"] and table[2].split() == ["1", "10.0.0.1", "bank-a"]
    assert table[-1] == "(2 rows)"
    assert main(["query", "--data-dir", str(data_dir), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out == "flow_id,src_ip,institution_id\n1,10.0.0.1,bank-a\n2,::1,bank-b\n"
    assert main(["query", "--data-dir", str(data_dir), "--format", "jsonl", sql]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[1] == {"flow_id": 2, "src_ip": "::1", "institution_id": "bank-b"}


def test_bad_sql_exits_1_with_the_engine_message(data_dir, capsys):
    assert main(["query", "--data-dir", str(data_dir), "SELECT nope FROM flows"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("finsa query: Code: 47") and "nope" in err


def test_ttl_option_and_tenants(tmp_path, capsys):
    path = str(tmp_path / "s")
    assert main(["storage", "migrate", "--data-dir", path, "--ttl-days", "nosuch=3"]) == 1
    assert main(["storage", "migrate", "--data-dir", path, "--ttl-days", "flows=3"]) == 0
    capsys.readouterr()
    assert main(["query", "--data-dir", path, "--format", "csv",
                 "SELECT create_table_query LIKE '%toIntervalDay(3)%' FROM system.tables WHERE name = 'flows'"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "1"


def test_query_as_an_institution(data_dir, capsys):
    with open_store(data_dir=data_dir) as store:
        store.load_institutions(parse_registry({"institution": [
            {"id": "bank-a", "name": "A", "subsector": "bank"}, {"id": "bank-b", "name": "B", "subsector": "bank"}]}))
    capsys.readouterr()
    sql = "SELECT institution_id, count() AS n FROM flows GROUP BY institution_id"
    assert main(["query", "--data-dir", str(data_dir), "--as", "bank-a", "--format", "csv", sql]) == 0
    assert capsys.readouterr().out == "institution_id,n\nbank-a,1\n"
    assert main(["query", "--data-dir", str(data_dir), "--as", "bank-a", "SELECT * FROM finsa.flows"]) == 1
    assert "another database" in capsys.readouterr().err
    assert main(["query", "--data-dir", str(data_dir), "--as", "regulator", "--format", "csv", sql + " ORDER BY 1"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["bank-a,1", "bank-b,1"]
    assert main(["query", "--data-dir", str(data_dir), "--format", "csv",
                 "SELECT principal, outcome, rows FROM audit_log ORDER BY time"]) == 0
    # the audit query's own row is written after it ran
    assert capsys.readouterr().out.splitlines()[1:] == ["bank-a,ok,1", "bank-a,refused,0", "regulator,ok,2"]
