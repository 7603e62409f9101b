"""Storage: ClickHouse tables derived from the wire records, behind one interface.

Two backends: the ClickHouse engine in process (chdb, the embedded default) and a ClickHouse
server through clickhouse-connect. Writes are idempotent per batch id. This package knows nothing
of Kafka or Faust.

Entry point: ``finsa.storage.backend.open_store(data_dir=..., url=..., database="finsa")`` returns
a ``Store`` with ``migrate()``, ``insert(batch) -> bool``, ``query(sql, parameters) -> QueryResult``
(``.columns``, ``.rows``, ``.dicts()``), ``command(sql)``, ``load_institutions(registry)`` and
``close()``; ``audit(entry)``, ``write_rows(table, rows)``, ``load_ip_enrichment(ranges)``,
``query_in(database, sql)``. Reads on behalf of a user go through
``finsa.storage.tenant.TenantView(store, principal)`` (tenant-scoped and audited). Modules: ``schema``
(DDL derived from ``finsa.wire``), ``native`` (the columnar insert payload), ``migrations``,
``cluster`` (the schema of a ClickHouse cluster: ``finsa storage migrate --cluster``), ``resketch``,
``chdb_backend``, ``server_backend``, ``clickhouse_http`` (the ClickHouse HTTP interface served from
chdb), ``rollups`` (roll-up tables and views),
``sector_schema`` (campaigns, warnings, threat_levels, emergencies), ``audit`` (audit_log),
``access`` (who reads what; server roles and row policies), ``sqlguard`` (the tenant SQL check),
``tenant`` (TenantView), ``tenant_http`` (the ClickHouse HTTP interface, read-only per tenant, for
Grafana), ``triage`` (analysts' triage events, cases and allowlist entries), ``query_command`` /
``storage_command`` / ``allowlist_command`` (CLI). See docs/storage.md.

Tables (in the store's database; unqualified names work in SQL):

* ``flows``: one row per wire flow + ``batch_id`` + ``first_seen``/``last_seen`` DateTime64(3)
  (MATERIALIZED from the ``*_ms`` columns, so not in ``SELECT *``) + ``stored_at``. Daily
  partitions on ``first_seen``; ORDER BY (institution_id, toStartOfMinute(first_seen), src_ip).
  Filter on ``first_seen`` and ``institution_id`` to use the key.
* ``alerts``: ReplacingMergeTree on (institution_id, detector, alert_id). The same alert id
  written in two batches is two rows until a merge: dashboards MUST read ``FROM alerts FINAL``
  (or ``count(DISTINCT alert_id)``), never a bare ``count()``.
* ``heartbeats``: agent health, with a ``time`` DateTime64 column.
* ``arp_bindings``: which MAC claimed which IPv4 address at a tap, when (the ARP record).
* ``institutions``: the registry (id, name, subsector, region, criticality, networks,
  latitude, longitude), replaced by ``load_institutions``.
* ``flows_1m`` / ``flows_1h``: SummingMergeTree fed by views (``flows_1h``'s reads ``flows_1m``):
  flows, bytes, packets per minute (hour) and institution, ``sources`` (``uniqCombinedMerge(12)``). Rows of one key add up only at merge
  time: always ``sum(flows) ... GROUP BY``. ``alerts_1m`` / ``alerts_1h``, ``alerts_geo_1h``,
  ``alerts_subsector_1h``: AggregatingMergeTree, ``uniqExactMerge(alerts)`` (see ``rollups``).
* ``campaigns``, ``warnings`` (read FINAL), ``threat_levels``, ``emergencies``: sector records;
  ``audit_log``: append-only reads; ``ip_enrichment``: address ranges -> country, ASN.
* ``ingested_batches`` (the idempotency ledger) and ``schema_migrations``.

TTLs count from ``stored_at`` (defaults: flows 30 days, alerts 365, heartbeats 30, roll-ups 365,
sector tables and audit_log never), so a replayed old capture is not expired on insert.
"""
