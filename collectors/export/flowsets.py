"""The set walker shared by NetFlow v9 and IPFIX: templates, options and data sets.

:class:`TemplatedState` keeps one :class:`~finsa.collectors.export.templates.Domain` per
(protocol, exporter, observation domain / source id). Decoding a datagram only walks its sets
and files each data set's records (raw bytes) under their template; :meth:`flush` then views
all records of one template at once with its numpy dtype and maps them to FLOW columns, so the
per-datagram cost is a few struct unpacks and the per-record cost is vectorised.

A data set whose template is unknown is counted in ``finsa_export_template_misses_total`` and
parked in its domain (bounded, ten seconds at most); when the template arrives it is decoded.
IPFIX template withdrawals (field count 0) remove templates; a refresh with the same layout
keeps the template, a changed layout replaces it.
"""

from __future__ import annotations

import struct

import numpy as np

from finsa.collectors.export import metrics as m
from finsa.collectors.export.columns import absorb_options, template_columns
from finsa.collectors.export.templates import (
    MAX_TEMPLATES_PER_DOMAIN, Domain, Template, TemplateError, compact_varlen, parse_templates,
)

__all__ = ["TemplatedState", "MAX_DOMAINS"]

MAX_DOMAINS = 4096
_SET_HEADER = struct.Struct(">HH")


class TemplatedState:
    """Template caches of every exporter domain, and records decoded but not yet flushed."""

    def __init__(self) -> None:
        self.domains: dict[tuple, Domain] = {}
        self.groups: dict[Template, list[tuple[bytes, int, int, int]]] = {}
        self.rows = 0
        #: template refreshes by protocol, kept here and added to the metrics by the decoder
        self.refreshed: dict[str, int] = {}

    def domain(self, key: tuple) -> Domain | None:
        found = self.domains.get(key)
        if found is None:
            if len(self.domains) >= MAX_DOMAINS:
                m.skip("too_many_exporters")
                return None
            found = self.domains[key] = Domain(key)
        return found

    def file_message(self, protocol: str, exporter: str, domain_id: int, data: bytes, pos: int, end: int,
                     context: tuple[int, int]) -> int:
        """Decode the sets of one message, ``data[pos:end]``, in the template domain of
        (``protocol``, ``exporter``, ``domain_id``); the number of records filed."""
        domain = self.domain((protocol, exporter, domain_id))
        if domain is None:
            return 0
        before = self.rows
        self.walk(protocol, data, pos, end, domain, context)
        return self.rows - before

    def walk(self, protocol: str, data: bytes, pos: int, end: int, domain: Domain,
             context: tuple[int, int]) -> None:
        """Decode the sets in ``data[pos:end]``; ``context`` is (export_ms, uptime_ms or -1)."""
        if domain.pending:
            dropped = domain.expire()
            if dropped:
                m.skip("template_never_arrived", dropped)
        ipfix = protocol == "ipfix"
        while end - pos >= 4:
            set_id, length = _SET_HEADER.unpack_from(data, pos)
            if length < 4 or pos + length > end:
                m.skip("bad_set_length")
                return
            start, pos = pos + 4, pos + length
            if set_id >= 256:
                self._data_set(protocol, domain, set_id, data, start, pos, context)
            elif set_id in ((2, 3) if ipfix else (0, 1)):
                self._template_set(protocol, domain, set_id, data, start, pos)
            else:
                m.skip("unknown_set_id")
        if pos != end:
            m.skip("trailing_bytes")

    def _template_set(self, protocol: str, domain: Domain, set_id: int, data: bytes,
                      start: int, end: int) -> None:
        try:
            parsed = parse_templates(data, start, end, set_id)
        except TemplateError as exc:
            m.skip(exc.reason)
            return
        for tid, template in parsed:
            if template is None:
                self._withdraw(protocol, domain, tid, set_id)
                continue
            old = domain.templates.get(tid)
            if old is not None and old.same_layout(template):
                self.refreshed[protocol] = self.refreshed.get(protocol, 0) + 1
                continue
            if old is None and len(domain.templates) >= MAX_TEMPLATES_PER_DOMAIN:
                m.skip("template_cache_full")
                continue
            template.domain = domain
            domain.templates[tid] = template
            m.TEMPLATES.inc(protocol=protocol, event="learned")
            for _, body, context in domain.pending.pop(tid, ()):
                self._records(template, body, 0, len(body), context)

    def _withdraw(self, protocol: str, domain: Domain, tid: int, set_id: int) -> None:
        if tid == set_id:  # withdraw all templates (set 2) or all options templates (set 3)
            options = set_id == 3
            gone = [k for k, t in domain.templates.items() if t.options == options]
        else:
            gone = [tid] if tid in domain.templates else []
        for k in gone:
            del domain.templates[k]
        m.TEMPLATES.inc(len(gone), protocol=protocol, event="withdrawn")

    def _data_set(self, protocol: str, domain: Domain, set_id: int, data: bytes, start: int,
                  end: int, context: tuple[int, int]) -> None:
        template = domain.templates.get(set_id)
        if template is not None:
            self._records(template, data, start, end, context)
            return
        m.TEMPLATE_MISSES.inc(protocol=protocol)
        if not domain.park(set_id, bytes(data[start:end]), context):
            m.skip("pending_buffer_full")

    def _records(self, template: Template, data: bytes, start: int, end: int,
                 context: tuple[int, int]) -> None:
        if template.record_bytes:
            n = (end - start) // template.record_bytes
            blob = data[start:start + n * template.record_bytes]
        else:
            blob, n = compact_varlen(template, data, start, end)
        if n == 0:
            return
        if template.options:
            absorb_options(template, np.frombuffer(blob, template.dtype, count=n), template.domain)  # type: ignore[arg-type]  # a filed template has its domain
            return
        self.groups.setdefault(template, []).append((blob, n, context[0], context[1]))
        self.rows += n

    def flush(self) -> list[dict[str, np.ndarray]]:
        """FLOW columns of every record filed since the last flush, one dict per template."""
        out = []
        for template, chunks in self.groups.items():
            blob = b"".join(c[0] for c in chunks)
            counts = np.array([c[1] for c in chunks], dtype=np.int64)
            rec = np.frombuffer(blob, template.dtype, count=int(counts.sum()))
            export_ms = np.repeat(np.array([c[2] for c in chunks], dtype=np.int64), counts)
            uptimes = np.array([c[3] for c in chunks], dtype=np.int64)
            uptime_ms = None if (uptimes < 0).all() else np.repeat(uptimes, counts)
            out.append(template_columns(rec, export_ms, uptime_ms, template.domain))  # type: ignore[arg-type]  # a filed template has its domain
        self.groups.clear()
        self.rows = 0
        return out
