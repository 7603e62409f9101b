"""Templates of NetFlow v9 and IPFIX, and the per-exporter state that holds them.

A :class:`Template` turns its field list into a numpy structured dtype (big-endian fields),
so a whole data set with a fixed-length template is viewed with one ``np.frombuffer``. Fields
are named ``e<id>`` (IANA elements), ``r<id>`` (RFC 5103 reverse elements, enterprise 29305),
``p<pen>_<id>`` (other enterprises) and ``s<type>`` (NetFlow v9 option scopes); a repeated
name keeps its first occurrence. Variable-length fields (length 65535, IPFIX) are dropped from
the dtype: :func:`compact_varlen` copies each record's fixed fields into that layout.

:class:`Domain` is the state of one exporter + observation domain (source id): its templates,
its sampler table from options data, and data sets waiting for their template.

>>> t = Template(256, ((8, 0, 4), (12, 0, 4), (2, 0, 4)))
>>> t.record_bytes, t.dtype.names
(12, ('e8', 'e12', 'e2'))
"""

from __future__ import annotations

import functools
import struct
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["VARLEN", "REVERSE_PEN", "Template", "Domain", "TemplateError", "parse_templates",
           "compact_varlen", "MAX_TEMPLATES_PER_DOMAIN"]

VARLEN = 65535
REVERSE_PEN = 29305
MAX_TEMPLATES_PER_DOMAIN = 1024
MAX_PENDING_SETS = 64
PENDING_MAX_AGE_S = 10.0
_U16 = struct.Struct(">H")
_U16X2 = struct.Struct(">HH")
_U16X3 = struct.Struct(">HHH")
_U32 = struct.Struct(">I")


class TemplateError(ValueError):
    """A template or options-template set is malformed; ``reason`` is the metric label."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _field_name(element: int, pen: int, scope_v9: bool) -> str:
    if scope_v9:
        return f"s{element}"
    if pen == 0:
        return f"e{element}"
    if pen == REVERSE_PEN:
        return f"r{element}"
    return f"p{pen}_{element}"


class Template:
    """One (options) template: its fields as (element id, enterprise, length) triples."""

    __slots__ = ("template_id", "fields", "scope_count", "options", "dtype", "record_bytes",
                 "min_record_bytes", "names", "domain")

    def __init__(self, template_id: int, fields: tuple[tuple[int, int, int], ...], scope_count: int = 0,
                 options: bool = False, v9_scopes: bool = False, domain: "Domain | None" = None) -> None:
        self.template_id, self.fields = template_id, fields
        self.scope_count, self.options, self.domain = scope_count, options, domain
        self.dtype, self.names, self.record_bytes, self.min_record_bytes = _layout(
            fields, scope_count if v9_scopes else 0)

    def same_layout(self, other: "Template") -> bool:
        return (self.fields, self.scope_count, self.options) == (other.fields, other.scope_count, other.options)


@functools.lru_cache(maxsize=4096)
def _layout(fields: tuple[tuple[int, int, int], ...], v9_scope_count: int) -> tuple[np.dtype, frozenset, int, int]:
    """(dtype, field names, record bytes or 0 when variable, minimum record bytes) of a field list.

    Exporters resend the same templates every few seconds: the layout is built once per field
    list (``v9_scope_count`` fields named as NetFlow v9 option scopes).
    """
    spec: list[tuple] = []
    seen: set[str] = set()
    for i, (element, pen, length) in enumerate(fields):
        if length == VARLEN:
            continue
        name = _field_name(element, pen, i < v9_scope_count)
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        spec.append((name, f">u{length}") if length in (1, 2, 4, 8) else (name, "u1", (length,)))
    dtype = np.dtype(spec)
    fixed = sum(length for _, _, length in fields if length != VARLEN)
    varlen = sum(1 for _, _, length in fields if length == VARLEN)
    return dtype, frozenset(dtype.names or ()), 0 if varlen else fixed, fixed + varlen


def _read_fields(body: bytes, pos: int, end: int, count: int, ipfix: bool) -> tuple[list, int]:
    if pos + 4 * count <= end:  # common case: no enterprise numbers, one unpack for all fields
        flat = struct.unpack_from(f">{2 * count}H", body, pos)
        elements = flat[0::2]
        if not ipfix or not any(e & 0x8000 for e in elements):
            lengths = flat[1::2]
            if not ipfix and VARLEN in lengths:
                raise TemplateError("bad_field_length")
            return [(e, 0, n) for e, n in zip(elements, lengths)], pos + 4 * count
    out = []
    for _ in range(count):
        if pos + 4 > end:
            raise TemplateError("truncated_template")
        element, length = _U16X2.unpack_from(body, pos)
        pos += 4
        pen = 0
        if ipfix and element & 0x8000:
            if pos + 4 > end:
                raise TemplateError("truncated_template")
            pen = _U32.unpack_from(body, pos)[0]
            element &= 0x7FFF
            pos += 4
        if length == VARLEN and not ipfix:
            raise TemplateError("bad_field_length")
        out.append((element, pen, length))
    return out, pos


def parse_templates(body: bytes, start: int, end: int, set_id: int) -> list[tuple[int, Template | None]]:
    """Templates of one template set (v9 ids 0/1, IPFIX ids 2/3) as (template id, template).

    A ``None`` template is an IPFIX withdrawal (template id 2 or 3: withdraw all of that kind).
    Raises TemplateError on a malformed set; every loop is bounded by the set length.
    """
    ipfix, options = set_id in (2, 3), set_id in (1, 3)
    out: list[tuple[int, Template | None]] = []
    pos = start
    while end - pos >= 4:
        if options and not ipfix:
            if end - pos < 6:
                break
            tid, scope_len, option_len = _U16X3.unpack_from(body, pos)
            if tid == 0:
                break  # padding
            if scope_len % 4 or option_len % 4:
                raise TemplateError("bad_options_template")
            scopes, pos = _read_fields(body, pos + 6, end, scope_len // 4, False)
            opts, pos = _read_fields(body, pos, end, option_len // 4, False)
            fields, scope_count = scopes + opts, len(scopes)
        else:
            tid, count = _U16X2.unpack_from(body, pos)
            pos += 4
            if tid == 0 and not ipfix:
                break  # padding
            if ipfix and count == 0:
                out.append((tid, None))
                continue
            scope_count = 0
            if options:
                if end - pos < 2:
                    raise TemplateError("truncated_template")
                scope_count = _U16.unpack_from(body, pos)[0]
                pos += 2
                if scope_count == 0 or scope_count > count:
                    raise TemplateError("bad_options_template")
            fields, pos = _read_fields(body, pos, end, count, ipfix)
        if tid < 256:
            raise TemplateError("bad_template_id")
        template = Template(tid, tuple(fields), scope_count, options, v9_scopes=options and not ipfix)
        if template.min_record_bytes == 0:
            raise TemplateError("empty_template")
        out.append((tid, template))
    return out


def compact_varlen(template: Template, body: bytes, start: int, end: int) -> tuple[bytes, int]:
    """Copy each record's fixed-length fields into ``template.dtype`` layout: (bytes, records).

    Stops at the first record that does not fit (the set's padding, or a truncated record).
    """
    parts: list[bytes] = []
    pos, n = start, 0
    while end - pos >= template.min_record_bytes:
        rec_start, mark, ok = pos, len(parts), True
        for _, _, length in template.fields:
            if length == VARLEN:
                if pos >= end:
                    ok = False
                    break
                length, pos = body[pos], pos + 1
                if length == 255:
                    if pos + 2 > end:
                        ok = False
                        break
                    length, pos = _U16.unpack_from(body, pos)[0], pos + 2
                pos += length
            else:
                parts.append(body[pos:pos + length])
                pos += length
            if pos > end:
                ok = False
                break
        if not ok or pos == rec_start:
            del parts[mark:]
            break
        n += 1
    return b"".join(parts), n


@dataclass
class Domain:
    """State of one exporter + observation domain: templates, samplers, waiting data sets."""

    key: tuple
    templates: dict[int, Template] = field(default_factory=dict)
    #: sampler id -> packet sampling rate (1 in N), from options data
    samplers: dict[int, int] = field(default_factory=dict)
    #: rate from options data that named no sampler (or the last one seen); 0 when unknown
    default_rate: int = 0
    #: IPFIX systemInitTimeMilliseconds (IE 160), for sysUpTime-relative times; 0 when unknown
    system_init_ms: int = 0
    #: template id -> [(arrival monotonic s, set body, context)] waiting for the template
    pending: dict[int, list] = field(default_factory=dict)

    def pending_count(self) -> int:
        return sum(len(v) for v in self.pending.values())

    def park(self, template_id: int, body: bytes, context: tuple) -> bool:
        """Keep a data set until its template arrives; False when the buffer is full."""
        self.expire()
        if self.pending_count() >= MAX_PENDING_SETS:
            return False
        self.pending.setdefault(template_id, []).append((time.monotonic(), body, context))
        return True

    def expire(self, max_age_s: float = PENDING_MAX_AGE_S) -> int:
        """Drop waiting sets older than ``max_age_s``; the number dropped."""
        if not self.pending:
            return 0
        cutoff, dropped = time.monotonic() - max_age_s, 0
        for tid in list(self.pending):
            keep = [p for p in self.pending[tid] if p[0] >= cutoff]
            dropped += len(self.pending[tid]) - len(keep)
            if keep:
                self.pending[tid] = keep
            else:
                del self.pending[tid]
        return dropped
