"""The access map covers every table; the server SQL has the expected shape; chdb refuses it."""

from __future__ import annotations

import os
import re
import stat

import pytest

from finsa.app.cli import main
from finsa.errors import StorageError
from finsa.institutions import parse_registry
from finsa.storage.access import ACCESS, ACCESS_BY_TABLE, REGULATOR_ONLY, tenant_sql

REGISTRY = parse_registry({"institution": [
    {"id": "bank-a", "name": "A", "subsector": "bank", "region": "north"},
    {"id": "ins-b", "name": "B", "subsector": "insurance", "region": "south"}]})
REGISTRY_TOML = """
[[institution]]
id = "bank-a"
name = "A"
subsector = "bank"
region = "north"
"""


def test_every_table_has_an_access_rule(migrated):
    tables = {r[0] for r in migrated.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                           "AND engine NOT IN ('MaterializedView', 'Dictionary')").rows}
    assert tables == {a.table for a in ACCESS} | set(REGULATOR_ONLY)


def test_generated_sql_shape():
    generated = tenant_sql(REGISTRY.institution, "finsa")
    sql = generated.statements
    assert "CREATE ROLE IF NOT EXISTS finsa_regulator" in sql
    assert "GRANT SELECT ON `finsa`.* TO finsa_regulator" in sql
    assert "CREATE ROLE IF NOT EXISTS `finsa_institution_bank-a`" in sql
    own = [a.table for a in ACCESS if a.scope == "own"]
    for table in own:
        assert (f"CREATE ROW POLICY OR REPLACE `finsa_bank-a` ON `finsa`.`{table}` USING "
                in "\n".join(sql)), table
        assert any(s.startswith(f"CREATE ROW POLICY OR REPLACE finsa_all ON `finsa`.`{table}` USING 1 TO")
                   for s in sql)
    assert ("CREATE ROW POLICY OR REPLACE `finsa_bank-a` ON `finsa`.`flows` USING institution_id = 'bank-a' "
            "TO `finsa_institution_bank-a`") in sql
    assert not any("ON `finsa`.`alerts_geo_1h` USING" in s for s in sql)  # shared: no policy
    grant = next(s for s in sql if "ON `finsa`.`institutions` TO `finsa_institution_bank-a`" in s)
    assert "`networks`" not in grant and "`name`" in grant
    assert not any("ingested_batches" in s for s in sql)
    users = [s for s in sql if s.startswith("CREATE USER") and "HOST NONE" not in s]  # (the k-view definer)
    assert len(users) == 3 and all(re.search(r"sha256_hash BY '[0-9a-f]{64}'", u) for u in users)
    assert not any(p in "\n".join(sql) for p in generated.passwords.values())


def test_chdb_refuses_access_control(store):
    for statement in tenant_sql(REGISTRY.institution, store.database).statements[:1] + [
            "CREATE USER finsa_x", f"CREATE ROW POLICY p ON {store.database}.flows USING 1 TO ALL"]:
        with pytest.raises(StorageError) as err:
            store.command(statement)
        assert "ACCESS_DENIED" in str(err.value) or "Not enough privileges" in str(err.value)


def test_tenants_command_prints_and_keeps_passwords_apart(tmp_path, capsys, monkeypatch):
    registry = tmp_path / "institutions.toml"
    registry.write_text(REGISTRY_TOML)
    creds = tmp_path / "creds.toml"
    assert main(["storage", "tenants", "--registry", str(registry), "--print", "--credentials", str(creds)]) == 0
    out = capsys.readouterr().out
    assert "CREATE ROW POLICY OR REPLACE `finsa_bank-a` ON `finsa`.`alerts`" in out
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    assert "finsa_bank-a = " in creds.read_text()
    # never overwrites a credentials file; --print needs a registry
    assert main(["storage", "tenants", "--registry", str(registry), "--print", "--credentials", str(creds)]) == 1
    monkeypatch.chdir(tmp_path)
    assert main(["storage", "tenants", "--print"]) == 1


def test_access_filters_name_existing_columns(migrated):
    # every filter compiles against its table (a renamed column would fail here, not in production)
    from finsa.storage.access import row_filter

    for access in ACCESS:
        if access.filter:
            migrated.query(f"SELECT count() FROM {access.table} WHERE {row_filter(access, 'x', 'y', 'z')}")
    assert ACCESS_BY_TABLE["institutions"].hidden == ("networks",)


def test_institutions_read_sector_aggregates_only_through_k_anonymous_views():
    """Issue 15, findings 4 and 13: on a server, an institution's user (e.g. its Grafana data
    source) is never granted the raw aggregates with their mergeable states, only the
    k-anonymous views of <db>_shared, which run as a definer nobody can log in as."""
    sql = tenant_sql(REGISTRY.institution, "finsa", k=3).statements
    role = "`finsa_institution_bank-a`"
    for table in ("alerts_subsector_1h", "alerts_geo_1h"):
        assert not any(f"ON `finsa`.`{table}` TO {role}" in s for s in sql), table
        assert f"GRANT SELECT ON `finsa_shared`.`{table}` TO {role}" in sql
        view = next(s for s in sql if s.startswith(f"CREATE OR REPLACE VIEW `finsa_shared`.`{table}`"))
        assert "DEFINER = `finsa_kviews` SQL SECURITY DEFINER" in view and "State" not in view.split(" AS ", 1)[0]
    assert "CREATE USER IF NOT EXISTS `finsa_kviews` IDENTIFIED WITH no_password HOST NONE" in sql
    # two institutions < k: every (subsector, region) group is withheld from the subsector view
    subsector_view = next(s for s in sql if "`finsa_shared`.`alerts_subsector_1h`" in s and "VIEW" in s)
    assert "transform(concat(subsector, '\\t', region), [], [], '')" in subsector_view
