"""Storage: ClickHouse tables derived from the wire records, behind one interface.

Two backends: the ClickHouse engine in process (chdb, the embedded default) and a ClickHouse
server through clickhouse-connect. Writes are idempotent per batch id. This package knows nothing
of Kafka or Faust.
"""
