"""An institution cannot read another's rows through any path finsa exposes; reads are audited."""

from __future__ import annotations

import pytest

from finsa.errors import StorageError
from finsa.institutions import parse_registry
from finsa.storage.sqlguard import QueryRefused
from finsa.storage.tenant import TenantView, tenant_database

REGISTRY = parse_registry({"institution": [
    {"id": "bank-a", "name": "Alpine Bank", "subsector": "bank", "region": "north", "networks": ["10.1.0.0/16"]},
    {"id": "bank-b", "name": "Bern Insurance", "subsector": "insurance", "region": "south",
     "networks": ["10.2.0.0/16"]},
]})


@pytest.fixture
def store(migrated, make_flows, make_alerts, engine):
    migrated.command("TRUNCATE TABLE audit_log")
    migrated.load_institutions(REGISTRY)
    migrated.insert(make_flows(20, institution="bank-a"))
    migrated.insert(make_flows(30, institution="bank-b"))
    alerts_b = make_alerts(["b-1", "b-2"])
    alerts_b.columns["institution_id"][:] = "bank-b"
    migrated.insert(make_alerts(["a-1"]))
    migrated.insert(alerts_b)
    migrated.write_rows("threat_levels", [
        {"time_ms": 1, "scope_kind": "institution", "scope_id": "bank-a", "level": 2},
        {"time_ms": 1, "scope_kind": "institution", "scope_id": "bank-b", "level": 4},
        {"time_ms": 1, "scope_kind": "sector", "scope_id": "", "level": 3}])
    migrated.write_rows("warnings", [
        {"warning_id": "w1", "scope_kind": "subsector", "scope_id": "bank"},
        {"warning_id": "w2", "scope_kind": "institution", "scope_id": "bank-b"},
        {"warning_id": "w3", "scope_kind": "sector"}])
    yield migrated
    for inst in ("bank-a", "bank-b"):
        engine.command(f"DROP DATABASE IF EXISTS `{tenant_database(migrated, inst)}` SYNC")


def _ids(view, sql):
    return sorted({row[0] for row in view.query(sql).rows})


def test_each_institution_sees_only_its_rows_and_the_regulator_all(store):
    a, b, reg = TenantView(store, "bank-a"), TenantView(store, "bank-b"), TenantView(store, "regulator")
    for table in ("flows", "alerts", "heartbeats", "flows_1m", "flows_1h", "alerts_1m", "alerts_1h"):
        assert set(_ids(a, f"SELECT institution_id FROM {table}")) <= {"bank-a"}
    assert a.query("SELECT count() FROM flows").rows == [(20,)]
    assert b.query("SELECT count() FROM alerts").rows == [(2,)]
    assert a.query("SELECT count() FROM flows WHERE institution_id = 'bank-b'").rows == [(0,)]
    assert reg.query("SELECT count() FROM flows").rows == [(50,)]
    assert _ids(a, "SELECT scope_id FROM threat_levels") == ["", "bank-a"]
    assert _ids(a, "SELECT warning_id FROM warnings") == ["w1", "w3"]
    assert _ids(b, "SELECT warning_id FROM warnings") == ["w2", "w3"]
    # sector-wide aggregates are shared k-anonymously (two institutions < k = 3: nothing shown);
    # other institutions' address ranges are not shared
    assert a.query("SELECT count() FROM alerts_subsector_1h").rows == [(0,)]
    assert TenantView(store, "bank-a", k=2).query("SELECT sum(institutions) FROM alerts_subsector_1h").rows == [(2,)]
    with pytest.raises(StorageError):
        a.query("SELECT networks FROM institutions")
    # joins and subqueries stay inside the tenant's views
    assert _ids(a, "SELECT f.institution_id FROM flows AS f JOIN alerts AS x ON x.institution_id = f.institution_id "
                   "WHERE f.src_ip IN (SELECT src_ip FROM flows)") == ["bank-a"]
    assert _ids(a, "SELECT institution_id FROM flows UNION ALL SELECT institution_id FROM alerts") == ["bank-a"]


def test_tenant_queries_run_readonly(store):
    assert TenantView(store, "bank-a").query("SELECT getSetting('readonly')").rows == [(2,)]


ESCAPES = [
    "SELECT * FROM {db}.flows",
    "SELECT * FROM `{db}`.`flows`",
    'SELECT * FROM "{db}"."flows"',
    "SELECT * FROM {db} . flows",
    "SELECT * FROM/**/{db}.flows",
    "SELECT institution_id FROM flows UNION ALL SELECT institution_id FROM {db}.flows",
    "SELECT * FROM (SELECT * FROM {db}.flows)",
    "SELECT count() FROM flows WHERE src_ip IN (SELECT src_ip FROM {db}.flows)",
    "SELECT count() FROM flows WHERE institution_id IN {db}.institutions",
    "WITH x AS (SELECT * FROM {db}.flows) SELECT * FROM x",
    "SELECT * FROM merge('{db}', '^flows$')",
    "SELECT * FROM merge(REGEXP('.*'), '^flows$')",
    "SELECT * FROM remote('127.0.0.1', {db}.flows)",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')",
    "SELECT * FROM s3('http://127.0.0.1:1/b/k', 'CSV', 'a String')",
    "SELECT * FROM view(SELECT * FROM {db}.flows)",
    "SELECT * FROM numbers(3)",
    "SELECT * FROM system.tables",
    "SELECT * FROM system.parts",
    "SELECT * FROM INFORMATION_SCHEMA.tables",
    "SELECT file('/etc/passwd')",
    "SELECT dictGet('{db}.ip_enrichment_dict', 'country', toIPv6('10.0.0.1'))",
    "SELECT 1; SELECT * FROM {db}.flows",
    "SELECT 1 /* ; */ ; DROP TABLE {db}.flows",
    "SELECT 1 -- nothing\n; SELECT * FROM {db}.flows",
    "SELECT * FROM flows SETTINGS readonly = 0",
    "SELECT * FROM flows SETTINGS max_threads = 1, readonly = 0",
    "SELECT * FROM flows INTO OUTFILE '/tmp/x.csv'",
    "SELECT $$a$$",
    "INSERT INTO flows (flow_id) VALUES (1)",
    "DROP TABLE flows",
    "ALTER TABLE audit_log DELETE WHERE 1",
    "SELECT * FROM flows /* unclosed",
]


def test_escapes_are_refused_and_audited(store):
    view = TenantView(store, "bank-a")
    for template in ESCAPES:
        with pytest.raises(QueryRefused):
            view.query(template.format(db=store.database))
            pytest.fail(f"not refused: {template}")
    audited = store.query("SELECT statement, principal, outcome, institutions FROM audit_log ORDER BY time").rows
    assert [r[0] for r in audited] == [t.format(db=store.database) for t in ESCAPES]
    assert all(r[1:] == ("bank-a", "refused", ["bank-a"]) for r in audited)
    assert store.query("SELECT count() FROM flows").rows == [(50,)]


def test_unknown_table_names_resolve_in_the_tenant_database_only(store):
    view = TenantView(store, "bank-a")
    for sql in ("SELECT * FROM ingested_batches", "SELECT * FROM tables", "SELECT * FROM flows_1m_mv"):
        with pytest.raises(StorageError) as err:
            view.query(sql)
        assert "UNKNOWN_TABLE" in str(err.value) or "doesn't exist" in str(err.value)


def test_panels_run_as_a_tenant(store):
    from finsa.dashboards.panels import PANELS, bind

    view = TenantView(store, "bank-a")
    for panel in PANELS:
        params = bind(panel, {"institution": "bank-b"} if "institution" in panel.parameters else {},
                      now_ms=2_000_000_000_000)
        params.update({"from_ms": 0} if "from_ms" in params else {})
        result = view.panel(panel.id, panel.sql, params)
        for row in result.dicts():
            if row.get("institution_id", "bank-a") != "bank-a":  # the map lists every institution ...
                assert not row.get("alerts") and row.get("level") == 1, panel.id  # ... without their alerts
            assert row.get("institution", "Alpine Bank") == "Alpine Bank", panel.id
    recorded = store.query("SELECT statement, institutions FROM audit_log WHERE action = 'panel' "
                           "ORDER BY time").rows
    assert [r[0] for r in recorded] == [p.id for p in PANELS]
    assert all(r[1] == ["bank-a"] for r in recorded)


def test_regulator_access_names_the_institution_in_the_audit(store):
    reg = TenantView(store, "regulator")
    reg.query("SELECT count() FROM flows WHERE institution_id = 'bank-b'")
    reg.query("SELECT count() FROM flows WHERE institution_id = {i:String}", {"i": "bank-a"})
    reg.query("SELECT count() FROM flows")
    rows = store.query("SELECT role, institutions, rows, outcome, parameters FROM audit_log ORDER BY time").rows
    assert [r[1] for r in rows] == [["bank-b"], ["bank-a"], []]
    assert all(r[0] == "regulator" and r[2] == 1 and r[3] == "ok" for r in rows)
    assert rows[1][4] == '{"i": "bank-a"}'
    # bank-b sees that the regulator read its data, not what the regulator read of bank-a
    seen_by_b = TenantView(store, "bank-b").query("SELECT role, institutions FROM audit_log WHERE role = 'regulator'")
    assert seen_by_b.rows == [("regulator", ["bank-b"])]
    with pytest.raises(QueryRefused):
        reg.query("SELECT * FROM file('/etc/passwd', 'LineAsString')")


def test_operator_has_full_access_but_cannot_change_the_audit_log(store):
    op = TenantView(store, "operator")
    assert op.query("SELECT count() FROM system.tables WHERE name = 'audit_log'").rows[0][0] >= 1
    for sql in ("ALTER TABLE audit_log DELETE WHERE 1", "TRUNCATE TABLE audit_log", "DELETE FROM audit_log WHERE 1",
                "DROP TABLE audit_log", f"DROP DATABASE {store.database}"):
        with pytest.raises(QueryRefused):
            op.query(sql)
    assert store.query("SELECT countIf(outcome = 'refused'), countIf(outcome = 'ok') FROM audit_log").rows == [(5, 1)]


def test_failed_query_is_audited_as_error(store):
    with pytest.raises(StorageError):
        TenantView(store, "bank-a").query("SELECT nope FROM flows")
    assert store.query("SELECT outcome, error != '' FROM audit_log").rows == [("error", True)]


def test_unknown_principal_is_refused(store):
    with pytest.raises(StorageError):
        TenantView(store, "bank-z")
    with pytest.raises(StorageError):
        TenantView(store, "Robert'); DROP")
