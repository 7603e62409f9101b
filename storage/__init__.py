"""Storage: ClickHouse tables derived from the wire records, behind one interface.

Two backends: the ClickHouse engine in process (chdb, the embedded default) and a ClickHouse
server through clickhouse-connect. Writes are idempotent per batch id. This package knows nothing
of Kafka or Faust.

Entry point: ``finsa.storage.backend.open_store(data_dir=..., url=..., database="finsa")`` returns
a ``Store`` with ``migrate()``, ``insert(batch) -> bool``, ``query(sql, parameters) -> QueryResult``
(``.columns``, ``.rows``, ``.dicts()``), ``command(sql)``, ``load_institutions(registry)`` and
``close()``. Modules: ``schema`` (DDL derived from ``finsa.wire``), ``native`` (the columnar
insert payload), ``migrations``, ``chdb_backend``, ``server_backend``, ``http_endpoint`` (the
ClickHouse HTTP interface served from chdb), ``query_command`` / ``storage_command`` (CLI).

Tables (in the store's database; unqualified names work in SQL):

* ``flows``: one row per wire flow + ``batch_id`` + ``first_seen``/``last_seen`` DateTime64(3)
  (MATERIALIZED from the ``*_ms`` columns, so not in ``SELECT *``) + ``stored_at``. Daily
  partitions on ``first_seen``; ORDER BY (institution_id, toStartOfMinute(first_seen), src_ip).
  Filter on ``first_seen`` and ``institution_id`` to use the key.
* ``alerts``: ReplacingMergeTree on (institution_id, detector, alert_id). The same alert id
  written in two batches is two rows until a merge: dashboards MUST read ``FROM alerts FINAL``
  (or ``count(DISTINCT alert_id)``), never a bare ``count()``.
* ``heartbeats``: agent health, with a ``time`` DateTime64 column.
* ``institutions``: the registry (id, name, subsector, region, criticality, networks,
  latitude, longitude), replaced by ``load_institutions``.
* ``flows_1m``: SummingMergeTree fed by ``flows_1m_mv``: flows, bytes, packets per minute and
  institution. Rows of one key add up only at merge time: always ``sum(flows) ... GROUP BY``.
* ``ingested_batches`` (the idempotency ledger) and ``schema_migrations``.

TTLs count from ``stored_at`` (defaults: flows 30 days, alerts 365, heartbeats 30, flows_1m
none), so a replayed old capture is not expired on insert.
"""
