"""A conservative check of SQL an institution may run against its own tables.

The check has two layers, and a query must pass both before it runs (in the tenant's database,
with ``readonly = 2``):

1. a lexical scan (comments and string literals understood, so ``/* ; */`` and ``';'`` tricks do
   nothing): one statement (a trailing ``;`` at most), beginning with SELECT or WITH, no
   ``INTO OUTFILE``, no ``FORMAT``, no heredoc strings, and a SETTINGS clause may only set
   the harmless settings in :data:`ALLOWED_SETTINGS` (never ``readonly``);
2. ClickHouse's own parser (``EXPLAIN AST``): every table expression must be an unqualified
   table name or a subquery (no ``db.table``, no table function: file, url, remote, s3,
   merge, view, dictionary, numbers ...), no identifier may start with a database name
   (``x IN finsa.flows``), and the functions in :data:`DENIED_FUNCTIONS` (files,
   dictionaries, joinGet ...) are refused.

Unqualified names resolve in the tenant's database, which holds only that tenant's views.

>>> lexical_check("SELECT 1 -- ; DROP TABLE x")
'SELECT 1 -- ; DROP TABLE x'
>>> try:
...     lexical_check("SELECT 1; SELECT 2")
... except QueryRefused as refused:
...     print(refused)
one statement only
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

from finsa.errors import StorageError


class QueryRefused(StorageError):
    """A tenant's query was refused before it ran."""


#: Settings a query may set in its own SETTINGS clause (readonly and friends are not among them).
ALLOWED_SETTINGS = frozenset({
    "join_use_nulls", "max_threads", "max_execution_time", "max_result_rows", "max_result_bytes",
    "result_overflow_mode", "max_rows_to_read", "max_bytes_to_read", "read_overflow_mode",
    "max_memory_usage", "join_algorithm", "final", "use_query_cache", "max_block_size",
    "aggregate_functions_null_for_empty", "count_distinct_implementation",
})
#: Scalar functions that reach outside the tenant's tables.
DENIED_FUNCTIONS = frozenset({
    "file", "joinget", "joingetornull", "hascolumnintable", "getclienthttpheader", "getmacro",
    "getserversetting", "showcertificate", "evalmlmethod", "catboostevaluate", "naivebayesclassifier",
})
_DENIED_PREFIXES = ("dictget", "dicthas", "dictis", "dictgethierarchy", "dictgetchildren", "dictgetdescendants")
_TOKEN = re.compile(r"""
    (?P<space>\s+) | (?P<line>(--|\#)[^\n]*) | (?P<block>/\*) | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<quoted>"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`) | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9][0-9A-Za-z_.]*) | (?P<dollar>\$) | (?P<other>.)""", re.VERBOSE | re.DOTALL)


def tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text) of every token but spaces and comments; refuses unclosed comments/strings."""
    out, pos = [], 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        assert match is not None  # (?P<other>.) with DOTALL matches any character
        kind = str(match.lastgroup)
        if kind == "block":
            end = _block_end(sql, match.end())
            pos = end
            continue
        if kind == "dollar":
            raise QueryRefused("heredoc ($...$) strings are not accepted")
        if kind == "other" and match.group() in "'\"`":
            raise QueryRefused("unclosed quote")
        if kind not in ("space", "line"):
            out.append((kind, match.group()))
        pos = match.end()
    return out


def _block_end(sql: str, pos: int) -> int:
    depth = 1  # ClickHouse block comments nest
    while depth:
        opening, closing = sql.find("/*", pos), sql.find("*/", pos)
        if closing < 0:
            raise QueryRefused("unclosed comment")
        if 0 <= opening < closing:
            depth, pos = depth + 1, opening + 2
        else:
            depth, pos = depth - 1, closing + 2
    return pos


def lexical_check(sql: str) -> str:
    """The statement without a trailing ``;`` if it passes layer 1, else QueryRefused."""
    toks = tokens(sql)
    while toks and toks[-1] == ("other", ";"):
        toks.pop()
        sql = sql[:sql.rstrip().rfind(";")]
    if not toks:
        raise QueryRefused("empty query")
    if ("other", ";") in toks:
        raise QueryRefused("one statement only")
    words = [text.upper() for kind, text in toks if kind == "word"]
    if toks[0][0] != "word" or toks[0][1].upper() not in ("SELECT", "WITH"):
        if toks[0] != ("other", "("):
            raise QueryRefused("only SELECT queries are accepted")
    for banned in ("OUTFILE", "FORMAT", "INSERT", "ALTER", "DROP", "TRUNCATE", "SYSTEM", "KILL"):
        if banned in words:
            raise QueryRefused(f"{banned} is not accepted in a tenant query")
    _check_settings(toks)
    return sql


def _check_settings(toks: list[tuple[str, str]]) -> None:
    for i, (kind, text) in enumerate(toks):
        if kind != "word" or text.upper() != "SETTINGS":
            continue
        j = i + 1
        while j < len(toks) and toks[j][0] in ("word", "quoted"):
            name = toks[j][1].strip('`"').lower()
            if name not in ALLOWED_SETTINGS:
                raise QueryRefused(f"setting {name} is not accepted")
            j += 1
            while j < len(toks) and toks[j] != ("other", ","):
                j += 1  # the value
            j += 1


def ast_check(sql: str, explain: Callable[[str], list[str]], databases: Iterable[str]) -> None:
    """Layer 2 on ``EXPLAIN AST`` lines (``explain`` runs it); QueryRefused on a violation."""
    lines = explain(f"EXPLAIN AST {sql}")
    databases = {d.lower() for d in databases}
    parsed = [(len(line) - len(line.lstrip(" ")), line.strip()) for line in lines if line.strip()]
    if not parsed or not parsed[0][1].startswith("SelectWithUnionQuery (children 1)"):
        raise QueryRefused("only plain SELECT queries are accepted")
    for k, (_depth, node) in enumerate(parsed):
        kind, _, rest = node.partition(" ")
        name = rest.split(" (")[0].strip()
        if kind == "TableExpression":
            child = parsed[k + 1][1] if k + 1 < len(parsed) else ""
            if not (child.startswith("TableIdentifier ") or child.startswith("Subquery")):
                raise QueryRefused(f"table functions are not accepted ({child.split(' (')[0]})")
        elif kind == "TableIdentifier" and name != "system.one" and ("." in name or name.lower() in databases):
            # (the parser itself names system.one for a SELECT without FROM: one row, no data)
            raise QueryRefused(f"tables of another database are not accepted ({name})")
        elif kind == "Identifier" and name.split(".")[0].lower() in databases and "." in name:
            raise QueryRefused(f"names of another database are not accepted ({name})")
        elif kind == "Function" and (name.lower() in DENIED_FUNCTIONS or name.lower().startswith(_DENIED_PREFIXES)):
            raise QueryRefused(f"function {name} is not accepted")
