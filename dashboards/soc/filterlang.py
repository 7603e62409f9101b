"""A small filter language over flow records, compiled to parameterised ClickHouse SQL.

Fields are the flow record's own (:data:`finsa.wire.FLOW`), never a second list: an address
field compares with addresses and CIDR ranges, a number field with numbers and ranges, a text
field with quoted or bare words. Grammar (case-insensitive keywords)::

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | compare
    compare := FIELD ("=" | "!=" | "<" | "<=" | ">" | ">=") VALUE
             | FIELD ["not"] "in" (VALUE | "(" VALUE ("," VALUE)* ")")
    VALUE   := number | number ".." number | address | address/prefix | 'text' | "text" | word

``in`` takes one value or a list; a CIDR range or ``a..b`` range matches any value inside it.
Every value becomes a query parameter (``{f0:IPv6}``): the SQL is built from field names the
record defines and fixed operators only, never from the user's text. A mistake raises
:class:`FilterError` with the 0-based position of the offending token.

>>> sql, params = compile_filter("src_ip in 203.0.113.0/24 and dst_port in (22, 3389)")
>>> sql
'((src_ip BETWEEN {f0:IPv6} AND {f1:IPv6}) AND (dst_port IN ({f2:UInt16}, {f3:UInt16})))'
>>> params["f0"], params["f1"], params["f3"]
('::ffff:203.0.113.0', '::ffff:203.0.113.255', 3389)
>>> compile_filter("not protocol = 17 or dst_port in 1000..2000")[0]
'((NOT (protocol = {f0:UInt8})) OR (dst_port BETWEEN {f1:UInt16} AND {f2:UInt16}))'
>>> try:
...     compile_filter("dst_port = = 3")
... except FilterError as exc:
...     print(exc.position, exc)
11 at 11: expected a value, got '='
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from finsa.errors import FinsaError
from finsa.wire import FLOW, Field

__all__ = ["FilterError", "compile_filter", "compile_or_parts", "FIELDS", "MAX_FILTER_CHARS"]

#: The fields a filter may name: every flow wire field.
FIELDS: dict[str, Field] = {f.name: f for f in FLOW.fields}
MAX_FILTER_CHARS = 2000
_MAX_LIST = 200
_INT_TYPES = {"u8": "UInt8", "u16": "UInt16", "u32": "UInt32", "u64": "UInt64", "i64": "Int64"}
_INT_RANGE = {"u8": (0, 2**8 - 1), "u16": (0, 2**16 - 1), "u32": (0, 2**32 - 1), "u64": (0, 2**64 - 1),
              "i64": (-2**63, 2**63 - 1)}
_TOKEN = re.compile(r"""
    (?P<space>\s+) | (?P<op>!=|<=|>=|=|<|>) | (?P<paren>[(),])
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<word>[A-Za-z0-9_.:/\-]+)""", re.VERBOSE)


class FilterError(FinsaError, ValueError):
    """The filter is not valid; ``position`` is where (0-based character offset)."""

    def __init__(self, message: str, position: int) -> None:
        self.position = position
        super().__init__(f"at {position}: {message}")


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def _lex(text: str) -> list[_Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterError(f"unexpected character {text[pos]!r}", pos)
        if m.lastgroup != "space":
            out.append(_Tok(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks, self.i = _lex(text), 0
        self.params: dict[str, Any] = {}
        self.or_parts: list[str] = []  # the last expr's terms: the outermost one's once parsed

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)  # the end token is never passed
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok.kind == "word" and tok.text.lower() == word:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise FilterError(f"expected {text!r}, got {tok.text or 'the end'!r}", tok.pos)

    def param(self, value: Any, ch_type: str) -> str:
        name = f"f{len(self.params)}"
        self.params[name] = value
        return f"{{{name}:{ch_type}}}"

    def expr(self) -> str:
        parts = [self.term()]
        while self.keyword("or"):
            parts.append(self.term())
        self.or_parts = parts
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self) -> str:
        parts = [self.factor()]
        while self.keyword("and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def factor(self) -> str:
        if self.keyword("not"):
            return f"(NOT {self.factor()})"
        if self.peek().text == "(":
            self.take()
            inner = self.expr()
            self.expect(")")
            return inner
        return self.compare()

    def compare(self) -> str:
        tok = self.take()
        field = FIELDS.get(tok.text) if tok.kind == "word" else None
        if field is None:
            raise FilterError(f"unknown field {tok.text or 'the end'!r} (fields: {', '.join(FIELDS)})", tok.pos)
        negate = self.keyword("not")
        if self.keyword("in"):
            clause = self.membership(field)
            return f"(NOT {clause})" if negate else clause
        if negate:
            raise FilterError("expected 'in' after 'not'", self.peek().pos)
        op = self.take()
        if op.kind != "op":
            raise FilterError(f"expected an operator (= != < <= > >= in), got {op.text or 'the end'!r}", op.pos)
        value = self.take()
        if op.text in ("=", "!="):
            clause = self.match(field, value)
            return f"(NOT {clause})" if op.text == "!=" else clause
        lit = self.scalar(field, value)
        return f"({field.name} {op.text} {lit})"

    def membership(self, field: Field) -> str:
        if self.peek().text != "(":
            return self.match(field, self.take())
        self.take()
        values = [self.take()]
        while self.peek().text == ",":
            self.take()
            values.append(self.take())
            if len(values) > _MAX_LIST:
                raise FilterError(f"at most {_MAX_LIST} values in a list", values[-1].pos)
        self.expect(")")
        ranged = [v for v in values if "/" in v.text or ".." in v.text]
        if not ranged:
            return f"({field.name} IN ({', '.join(self.scalar(field, v) for v in values)}))"
        return "(" + " OR ".join(self.match(field, v) for v in values) + ")"

    def match(self, field: Field, tok: _Tok) -> str:
        """``field`` equal to, or inside the range of, one value."""
        if field.kind == "ip" and tok.kind == "word" and "/" in tok.text:
            lo, hi = _cidr(tok)
            return f"({field.name} BETWEEN {self.param(lo, 'IPv6')} AND {self.param(hi, 'IPv6')})"
        if field.kind in _INT_TYPES and tok.kind == "word" and ".." in tok.text:
            a, _, b = tok.text.partition("..")
            lo = self.scalar(field, _Tok("word", a, tok.pos))
            hi = self.scalar(field, _Tok("word", b, tok.pos + len(a) + 2))
            return f"({field.name} BETWEEN {lo} AND {hi})"
        return f"({field.name} = {self.scalar(field, tok)})"

    def scalar(self, field: Field, tok: _Tok) -> str:
        """One value of ``field``'s type as a parameter placeholder."""
        if tok.kind not in ("word", "string"):
            raise FilterError(f"expected a value, got {tok.text or 'the end'!r}", tok.pos)
        text = tok.text[1:-1] if tok.kind == "string" else tok.text
        if field.kind == "ip":
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                raise FilterError(f"{field.name}: {text!r} is not an address", tok.pos) from None
            return self.param(_mapped(addr), "IPv6")
        if field.kind in _INT_TYPES:
            try:
                number = int(text, 0)
            except ValueError:
                raise FilterError(f"{field.name}: {text!r} is not a whole number", tok.pos) from None
            low, high = _INT_RANGE[field.kind]
            if not low <= number <= high:
                raise FilterError(f"{field.name}: {number} is out of range {low}..{high}", tok.pos)
            return self.param(number, _INT_TYPES[field.kind])
        if field.kind == "f64":
            try:
                return self.param(float(text), "Float64")
            except ValueError:
                raise FilterError(f"{field.name}: {text!r} is not a number", tok.pos) from None
        return self.param(text, "String")


def _mapped(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"::ffff:{addr}" if addr.version == 4 else str(addr)


def _cidr(tok: _Tok) -> tuple[str, str]:
    try:
        net = ipaddress.ip_network(tok.text, strict=False)
    except ValueError:
        raise FilterError(f"{tok.text!r} is not a CIDR range", tok.pos) from None
    return _mapped(net.network_address), _mapped(net.broadcast_address)


def compile_filter(text: str) -> tuple[str, dict[str, Any]]:
    """``(sql_condition, parameters)`` of a filter; ``("1", {})`` for an empty one."""
    sql, _, params = _compile(text)
    return sql, params


def compile_or_parts(text: str) -> tuple[list[str], dict[str, Any]]:
    """The top-level ``or`` terms of a filter, compiled with the same parameters as
    :func:`compile_filter` (one term when the filter has no top-level ``or``).

    >>> compile_or_parts("src_ip = 10.0.0.1 or dst_ip = 10.0.0.2 and dst_port = 22")[0]
    ['(src_ip = {f0:IPv6})', '((dst_ip = {f1:IPv6}) AND (dst_port = {f2:UInt16}))']
    >>> compile_or_parts("(dst_port = 22 or dst_port = 23) and protocol = 6")[0]
    ['(((dst_port = {f0:UInt16}) OR (dst_port = {f1:UInt16})) AND (protocol = {f2:UInt8}))']
    """
    sql, parts, params = _compile(text)
    return (parts if len(parts) > 1 else [sql]), params


def _compile(text: str) -> tuple[str, list[str], dict[str, Any]]:
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"a filter is at most {MAX_FILTER_CHARS} characters", MAX_FILTER_CHARS)
    if not text.strip():
        return "1", ["1"], {}
    parser = _Parser(text)
    sql = parser.expr()
    tok = parser.peek()
    if tok.kind != "end":
        raise FilterError(f"expected 'and', 'or' or the end, got {tok.text!r}", tok.pos)
    return sql, parser.or_parts, parser.params
