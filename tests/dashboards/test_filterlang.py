"""The flow filter language: what it accepts, the SQL it makes, where it says a filter is wrong,
and that no user text ever reaches the SQL (fuzzed)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finsa.dashboards.soc.filterlang import FIELDS, FilterError, compile_filter
from finsa.storage.backend import open_store
from finsa.wire import FLOW


def test_fields_are_the_flow_record_fields():
    assert list(FIELDS) == list(FLOW.names)


@pytest.mark.parametrize("text, where", [
    ("dst_port = = 3", 11), ("nosuch = 1", 0), ("dst_port = 70000", 11), ("src_ip = 300.1.1.1", 9),
    ("(dst_port = 1", 13), ("dst_port in (1, 2", 17), ("src_ip in 10.0.0.0/33", 10), ("dst_port = 1 xor 2", 13),
    ("dst_port = 1;", 12), ("not", 3), ("protocol not = 6", 13), ("dst_port in (22,", 16), ("dst_port in (", 13),
    ("dst_port in", 11), ("dst_port", 8),
])
def test_a_bad_filter_says_where(text, where):
    with pytest.raises(FilterError) as caught:
        compile_filter(text)
    assert caught.value.position == where, str(caught.value)


def test_every_operator_compiles_to_parameters():
    sql, params = compile_filter("src_ip in (10.0.0.0/8, 192.0.2.1) and not (dst_port in 1..1023 or protocol != 6) "
                                 "and tls_sni = 'evil.example' and http_host in (a.example, \"b c\") "
                                 "and src2dst_bytes >= 1000 and dst_ip not in 2001:db8::/32")
    assert "evil.example" not in sql and "10.0.0.0" not in sql and "2001" not in sql
    assert params["f0"] == "::ffff:10.0.0.0" and params["f1"] == "::ffff:10.255.255.255"
    assert "'b c'" not in sql and "b c" in params.values()
    assert re.fullmatch(r"[\w\s(){}:,.!=<>]+", sql), sql


_PLACEHOLDER = re.compile(r"\{f\d+:(IPv6|UInt8|UInt16|UInt32|UInt64|Int64|Float64|String)\}")
_WORDS = re.compile(r"\b(" + "|".join([*FIELDS, "AND", "OR", "NOT", "IN", "BETWEEN"]) + r")\b")


def _only_structure(sql: str) -> bool:
    """True when the SQL is field names, placeholders, keywords and operators only: no user text."""
    rest = _WORDS.sub(" ", _PLACEHOLDER.sub(" ", sql))
    return re.fullmatch(r"[\s()=!<>,1]*", rest) is not None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_compiles_or_is_refused_with_a_position(text):
    try:
        sql, _ = compile_filter(text)
    except FilterError as exc:
        assert 0 <= exc.position <= max(len(text), 2000)
        return
    assert _only_structure(sql), sql


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["tls_sni", "http_uri", "dns_query"]), st.text(min_size=1, max_size=30))
def test_hostile_values_stay_values(field, value):
    clean = value.replace("'", "")
    sql, params = compile_filter(f"{field} = '{clean}' or dst_port = 1")
    assert _only_structure(sql), sql
    assert params["f0"] == clean


def test_the_sql_runs_in_clickhouse():
    store = open_store()
    try:
        store.migrate()
        store.insert(FLOW.make_batch({"src_ip": ["203.0.113.9", "10.0.0.1"], "dst_ip": ["10.1.0.5", "10.1.0.6"],
                                      "dst_port": [22, 80], "protocol": [6, 6], "tls_sni": ["x", "evil.example"],
                                      "institution_id": ["bank-a", "bank-a"], "first_seen_ms": [1, 2]}))
        for text, expected in [("src_ip in 203.0.113.0/24 and dst_port in (22, 3389)", 1),
                               ("dst_ip in 10.1.0.0/16", 2), ("not dst_port in 1..30", 1),
                               ("tls_sni = 'evil.example' or src_ip = 203.0.113.9", 2), ("", 2)]:
            sql, params = compile_filter(text)
            assert store.query(f"SELECT count() FROM flows WHERE {sql}", params).rows[0][0] == expected, text
    finally:
        store.close()
