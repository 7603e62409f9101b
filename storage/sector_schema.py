"""Tables the sector layer writes: campaigns, warnings, threat levels, from one field list each.

``core/wire.py`` has no CAMPAIGN / WARNING / LEVEL record types yet, so their fields are defined
here, as :class:`finsa.wire.Field` lists; the columns, the DDL and the sector layer's writes all
derive from them (when the wire module gains those record types, point these names at their
``fields``). JSON-valued fields are plain strings (the wire has no array kind).

* ``campaigns``: ReplacingMergeTree by ``campaign_id`` with version ``last_seen_ms``: the sector
  layer re-writes a growing campaign, the newest row wins (read ``FROM campaigns FINAL``).
* ``warnings``: ReplacingMergeTree by ``warning_id`` (a re-sent warning collapses; read FINAL).
* ``threat_levels``: MergeTree, every evaluation kept (history): ``scope_kind`` is institution,
  subsector, region or sector and ``scope_id`` names it ('' for the sector).

>>> [c.name for c in sector_columns("threat_levels")][:4]
['time_ms', 'scope_kind', 'scope_id', 'level']
>>> sector_columns("campaigns")[-2].name, sector_columns("campaigns")[-1].name
('last_seen', 'stored_at')
"""

from __future__ import annotations

from finsa.wire import Field

from finsa.storage.schema import STORED_AT, Column, _columns_block, _quote, _table_settings, _ttl, wire_column

#: Where a level or a warning applies.
SCOPE_KINDS = ("institution", "subsector", "region", "sector")

CAMPAIGN_FIELDS: tuple[Field, ...] = (
    Field("campaign_id", "str", "Deterministic campaign id (same activity, same id)"),
    Field("first_seen_ms", "i64", "First alert of the campaign, ms since the Unix epoch", codec="DoubleDelta"),
    Field("last_seen_ms", "i64", "Latest alert of the campaign (the row version)", codec="DoubleDelta"),
    Field("title", "str", "Short human title"),
    Field("kind", "str", "What links the alerts: same source, same technique, same target ...", True),
    Field("severity", "u8", "1 info .. 5 critical"),
    Field("score", "f64", "Campaign score; higher is worse"),
    Field("status", "str", "active or closed", True),
    Field("institutions", "str", "JSON array of the institution ids hit"),
    Field("institutions_hit", "u32", "How many institutions were hit"),
    Field("entities", "str", "JSON array of the entities (attacker addresses ...)"),
    Field("techniques", "str", "JSON array of MITRE ATT&CK technique ids"),
    Field("alerts", "u64", "Alerts attached to the campaign"),
    Field("summary", "str", "Free text for analysts"),
)

WARNING_FIELDS: tuple[Field, ...] = (
    Field("warning_id", "str", "Deterministic warning id"),
    Field("time_ms", "i64", "When the warning was issued, ms since the Unix epoch", codec="DoubleDelta"),
    Field("campaign_id", "str", "Campaign that caused it, '' when none"),
    Field("scope_kind", "str", "Audience: institution, subsector, region or sector", True),
    Field("scope_id", "str", "Institution id, subsector or region name; '' for the sector"),
    Field("severity", "u8", "1 info .. 5 critical"),
    Field("title", "str", "Short human title"),
    Field("body", "str", "What happened and what to do"),
    Field("indicators", "str", "JSON array of indicators (addresses, domains, JA4 ...)"),
    Field("techniques", "str", "JSON array of MITRE ATT&CK technique ids"),
    Field("status", "str", "issued, updated or withdrawn", True),
)

THREAT_LEVEL_FIELDS: tuple[Field, ...] = (
    Field("time_ms", "i64", "End of the evaluated window, ms since the Unix epoch", codec="DoubleDelta"),
    Field("scope_kind", "str", "institution, subsector, region or sector", True),
    Field("scope_id", "str", "Institution id, subsector or region name; '' for the sector", True),
    Field("level", "u8", "Threat level 1 normal .. 5 severe"),
    Field("score", "f64", "Score the level was derived from"),
    Field("contributions", "str", "JSON: what made up the score (detectors, techniques, campaigns)"),
)

SECTOR_FIELDS: dict[str, tuple[Field, ...]] = {
    "campaigns": CAMPAIGN_FIELDS, "warnings": WARNING_FIELDS, "threat_levels": THREAT_LEVEL_FIELDS,
}


def sector_columns(table: str) -> list[Column]:
    """Columns of a sector table: its fields, a DateTime64 per ``*_ms`` field, ``stored_at``."""
    fields = SECTOR_FIELDS[table]
    cols = [wire_column(f) for f in fields]
    cols += [Column(f.name[:-3], "DateTime64(3, 'UTC')", f"{f.name} as a time (UTC)", "DoubleDelta, ZSTD(1)",
                    f"fromUnixTimestamp64Milli({f.name}, 'UTC')")
             for f in fields if f.kind == "i64" and f.name.endswith("_ms")]
    return cols + [STORED_AT]


_ENGINES = {
    # (engine, partition, order by)
    "campaigns": ("ReplacingMergeTree(last_seen_ms)", "toYYYYMM(first_seen)", "campaign_id"),
    "warnings": ("ReplacingMergeTree", "toYYYYMM(time)", "warning_id"),
    "threat_levels": ("MergeTree", "toYYYYMM(time)", "(scope_kind, scope_id, time_ms)"),
}
_COMMENTS = {
    "campaigns": "Campaigns found by the sector layer; newest version wins: read FINAL",
    "warnings": "Warnings issued to the sector; read FINAL",
    "threat_levels": "Threat level evaluations per scope, history kept",
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
