"""Tables the sector layer writes, derived from its wire records (CAMPAIGN, WARNING, LEVEL, EMERGENCY).

Like the raw tables, each has one column per wire field, ``batch_id``, a DateTime64 per ``*_ms``
field and ``stored_at``, so ``Store.insert(batch)`` writes them idempotently; ``Store.write_rows``
takes plain dicts too. JSON-valued fields are strings (the wire has no array kind).

* ``campaigns``: ReplacingMergeTree by ``campaign_id`` with version ``last_seen_ms``: the sector
  layer re-writes a growing campaign, the newest row wins (read ``FROM campaigns FINAL``).
* ``warnings``: ReplacingMergeTree by ``warning_id`` (a re-sent warning collapses; read FINAL).
* ``threat_levels`` (LEVEL records): MergeTree, every evaluation kept (history): ``scope_kind``
  is institution, subsector, region or sector and ``scope_id`` names it ('' for the sector).
* ``emergencies``: MergeTree, every raise and clear kept, per institution.

>>> [c.name for c in sector_columns("threat_levels")][:4]
['time_ms', 'scope_kind', 'scope_id', 'level']
>>> [c.name for c in sector_columns("campaigns")][-4:]
['batch_id', 'first_seen', 'last_seen', 'stored_at']
"""

from __future__ import annotations

from finsa.wire import CAMPAIGN, EMERGENCY, LEVEL, WARNING, Field, RecordType

from finsa.storage.schema import Column, _columns_block, _quote, _table_settings, _ttl, derived_columns

#: Where a level or a warning applies.
SCOPE_KINDS = ("institution", "subsector", "region", "sector")

#: table -> the wire record written to it.
SECTOR_RECORDS: dict[str, RecordType] = {
    "campaigns": CAMPAIGN, "warnings": WARNING, "threat_levels": LEVEL, "emergencies": EMERGENCY,
}
SECTOR_FIELDS: dict[str, tuple[Field, ...]] = {table: r.fields for table, r in SECTOR_RECORDS.items()}


def sector_columns(table: str) -> list[Column]:
    """Columns of a sector table, like the raw tables': fields, ``batch_id``, times, ``stored_at``."""
    return derived_columns(SECTOR_RECORDS[table])


_ENGINES = {
    # (engine, partition, order by)
    "campaigns": ("ReplacingMergeTree(last_seen_ms)", "toYYYYMM(first_seen)", "campaign_id"),
    "warnings": ("ReplacingMergeTree", "toYYYYMM(time)", "warning_id"),
    "threat_levels": ("MergeTree", "toYYYYMM(time)", "(scope_kind, scope_id, time_ms)"),
    "emergencies": ("MergeTree", "toYYYYMM(time)", "(institution_id, time_ms, emergency_id)"),
}
_COMMENTS = {
    "campaigns": "Campaigns found by the sector layer; newest version wins: read FINAL",
    "warnings": "Warnings issued to the sector; read FINAL",
    "threat_levels": "Threat level evaluations per scope, history kept",
    "emergencies": "Institutions going dark and data-quality problems, raised and cleared",
}


def sector_ddl(table: str, ttl_days: int = 0) -> str:
    engine, partition, order = _ENGINES[table]
    return f"""CREATE TABLE IF NOT EXISTS {table} (
    {_columns_block(sector_columns(table))}
) ENGINE = {engine}
PARTITION BY {partition}
ORDER BY {order}
{_ttl("stored_at", ttl_days)}{_table_settings()}
COMMENT {_quote(_COMMENTS[table])}"""
