"""Wire records of finsa, defined once.

Every role shares these definitions: collectors build flow batches, stream workers decode them
and emit alert batches, storage derives its ClickHouse columns from the same field lists, and the
dashboards read what storage made of them. This module imports nothing else of the project.

A Kafka message carries one *batch* of records in a compact columnar binary encoding:

    header (little-endian, 48 bytes)
        magic        4s   b"FNSA"
        codec        u16  encoding version (CODEC_VERSION)
        record       u8   record type code (flow=1, alert=2, heartbeat=3, warning=4, campaign=5,
                          level=6, emergency=7)
        flags        u8   bit 0: body is zlib-compressed
        schema       u16  version of the record type's field list
        n_columns    u16
        n_rows       u32
        batch_id     16s  unique id of this batch (idempotent writes key on it)
        body_bytes   u32  length of the body as sent
        raw_bytes    u32  length of the body once decompressed
        crc32        u32  of the body as sent
        reserved     4s
    body: per column
        name_len u8, name utf-8, kind u8, payload_len u32, payload

Numeric columns are raw little-endian arrays; IP columns are 16 bytes per row (IPv4 as
IPv4-mapped IPv6, like ClickHouse's IPv6 type); string columns are dictionary-encoded
(unique values as u32 lengths + utf-8 blob, then codes of 1, 2 or 4 bytes by dictionary size), so a batch of 10,000 flows from
one institution repeats its id once, not 10,000 times. Decoding is a handful of numpy calls.

Columns are named in the body: a decoder ignores columns it does not know and fills columns
it expects but does not find with defaults. Adding a field is therefore compatible within a
topic version; removing or retyping one bumps the record's topic version (``finsa.flows.v2``:
FLOW v2 keeps every DNS question and HTTP request of a flow in list fields, not only the first).

>>> batch = FLOW.make_batch({"src_port": [1234], "dst_port": [22], "protocol": [6],
...                          "src_ip": ["10.0.0.1"], "dst_ip": ["192.0.2.7"],
...                          "institution_id": ["bank-a"]})
>>> again = decode_batch(encode_batch(batch))
>>> again.rows()[0]["dst_ip"], int(again.columns["dst_port"][0]), again.type.name
('192.0.2.7', 22, 'flow')
"""

from __future__ import annotations

import ipaddress
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "CODEC_VERSION", "MAX_BATCH_BYTES", "MAX_BATCH_ROWS", "TOPICS", "Field", "RecordType",
    "RecordBatch", "WireFormatError", "FLOW", "ALERT", "HEARTBEAT", "WARNING", "CAMPAIGN", "LEVEL",
    "EMERGENCY", "ARP", "RECORD_TYPES",
    "encode_batch", "decode_batch", "ip_to_bytes", "ips_from_strings", "ips_to_strings",
    "ipv4_to_mapped", "new_batch_id", "END_REASONS", "SEVERITIES", "LIST_SEP", "MARKER_SEP",
    "MAX_DNS_QUERIES", "MAX_HTTP_REQUESTS", "split_list",
]

CODEC_VERSION = 1
MAGIC = b"FNSA"
_HEADER = struct.Struct("<4sHBBHHI16sIII4s")
HEADER_BYTES = _HEADER.size
FLAG_ZLIB = 1
#: A batch larger than this is refused before any work is done on it (hostile input).
MAX_BATCH_BYTES = 64 * 1024 * 1024
MAX_BATCH_ROWS = 1_000_000

#: Topic names carry the record's schema version; an incompatible change bumps it.
TOPICS = {
    "flows": "finsa.flows.v2",
    "alerts": "finsa.alerts.v1",
    "heartbeats": "finsa.heartbeats.v1",
    "warnings": "finsa.warnings.v1",
    "campaigns": "finsa.campaigns.v1",
    "levels": "finsa.levels.v1",
    "emergencies": "finsa.emergencies.v1",
    "dlq": "finsa.dlq.v1",
}

#: List-valued string fields of a record (``dns_queries``, ``http_requests``) hold their items
#: separated by this character; items never contain it (collectors replace control characters).
LIST_SEP = "\n"
#: Bounds of the FLOW list fields: a flow keeps its first items, never more.
MAX_DNS_QUERIES = 32
MAX_HTTP_REQUESTS = 16
#: Separator of the items of ``app_markers``.
MARKER_SEP = ","

#: Why a flow was exported (``end_reason`` column).
END_REASONS = {0: "idle", 1: "active", 2: "fin", 3: "rst", 4: "flush"}
#: Alert and warning severity (``severity`` column).
SEVERITIES = {1: "info", 2: "low", 3: "medium", 4: "high", 5: "critical"}

_NUMERIC = {"u8": "<u1", "u16": "<u2", "u32": "<u4", "u64": "<u8", "i64": "<i8", "f64": "<f8"}
_KIND_CODES = {"u8": 1, "u16": 2, "u32": 3, "u64": 4, "i64": 5, "f64": 6, "ip": 7, "str": 8}
_CODE_KINDS = {v: k for k, v in _KIND_CODES.items()}


class WireFormatError(ValueError):
    """A batch could not be encoded or decoded; ``reason`` is a short machine-friendly tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Field:
    """One column of a record type.

    ``kind`` is one of u8, u16, u32, u64, i64, f64, ip, str. ``low_cardinality`` and ``codec``
    are hints for storage (ClickHouse LowCardinality, compression codec); ``doc`` is shown in
    the documentation and the ClickHouse column comment.
    """

    name: str
    kind: str
    doc: str
    low_cardinality: bool = False
    codec: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KIND_CODES:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")

    def empty(self, n: int) -> np.ndarray:
        """Default column of ``n`` rows: zeros, zero addresses or empty strings."""
        if self.kind == "ip":
            return np.zeros((n, 16), dtype=np.uint8)
        if self.kind == "str":
            out = np.empty(n, dtype=object)
            out[:] = ""
            return out
        return np.zeros(n, dtype=_NUMERIC[self.kind])

    def coerce(self, values: Any, n: int | None = None) -> np.ndarray:
        """Turn ``values`` (array, list, scalar) into this field's column array."""
        if self.kind == "ip":
            if isinstance(values, np.ndarray) and values.dtype == np.uint8 and values.ndim == 2:
                return np.ascontiguousarray(values)
            return ips_from_strings(values)
        if self.kind == "str":
            arr = np.asarray(values, dtype=object)
            if arr.ndim == 0:
                arr = np.full(n or 0, arr.item(), dtype=object)
            return arr
        arr = np.asarray(values)
        if arr.ndim == 0 and n is not None:
            arr = np.full(n, arr.item())
        if arr.dtype.kind == "f" and self.kind != "f64":
            if not np.isfinite(arr).all():
                raise WireFormatError("not_finite", f"column {self.name} has NaN or infinity")
        return arr.astype(_NUMERIC[self.kind], copy=False)


@dataclass(frozen=True)
class RecordType:
    """A kind of record: its code on the wire, topic and ordered fields."""

    name: str
    code: int
    version: int
    topic: str
    fields: tuple[Field, ...]
    doc: str = ""
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({f.name: f for f in self.fields})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        return self._index[name]

    def make_batch(self, columns: Mapping[str, Any], batch_id: bytes | None = None,
                   n_rows: int | None = None) -> "RecordBatch":
        """Validate ``columns`` and fill the missing ones with defaults.

        Raises WireFormatError on an unknown column or columns of different lengths.
        """
        unknown = sorted(set(columns) - set(self._index))
        if unknown:
            raise WireFormatError("unknown_column", f"{self.name}: {', '.join(unknown)}")
        coerced: dict[str, np.ndarray] = {}
        for name, values in columns.items():
            if not np.isscalar(values) and values is not None:
                coerced[name] = self._index[name].coerce(values)
        lengths = {len(v) for v in coerced.values()}
        if n_rows is None:
            n_rows = lengths.pop() if len(lengths) == 1 else (0 if not lengths else -1)
        if n_rows < 0 or any(length != n_rows for length in lengths):
            raise WireFormatError("ragged", f"{self.name}: columns have different lengths")
        for name, values in columns.items():
            if name not in coerced:
                coerced[name] = self._index[name].coerce(values, n_rows)
        full = {f.name: coerced.get(f.name, f.empty(n_rows)) for f in self.fields}
        return RecordBatch(self, full, batch_id or new_batch_id())


def _f(name: str, kind: str, doc: str, lc: bool = False, codec: str = "") -> Field:
    return Field(name, kind, doc, lc, codec)


FLOW = RecordType("flow", 1, 2, TOPICS["flows"], (
    _f("flow_id", "u64", "Flow id, unique per sensor; alerts cite it as evidence"),
    _f("first_seen_ms", "i64", "Time of the flow's first packet, ms since the Unix epoch", codec="DoubleDelta"),
    _f("last_seen_ms", "i64", "Time of the flow's last packet, ms since the Unix epoch", codec="DoubleDelta"),
    _f("institution_id", "str", "Institution whose sensor metered the flow", lc=True),
    _f("sensor_id", "str", "Sensor (collector agent) that metered the flow", lc=True),
    _f("ip_version", "u8", "4 or 6"),
    _f("protocol", "u8", "IP protocol number of the (inner) flow: 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6"),
    _f("vlan_id", "u16", "Innermost 802.1Q VLAN id, 0 when untagged"),
    _f("src_ip", "ip", "Address of the side that sent the first packet (IPv4 as IPv4-mapped IPv6)"),
    _f("dst_ip", "ip", "Address of the other side"),
    _f("src_port", "u16", "Transport source port (ICMP: type)"),
    _f("dst_port", "u16", "Transport destination port (ICMP: code)"),
    _f("src2dst_packets", "u64", "Packets from src to dst"),
    _f("src2dst_bytes", "u64", "Bytes from src to dst, as counted by the metering profile"),
    _f("dst2src_packets", "u64", "Packets from dst to src"),
    _f("dst2src_bytes", "u64", "Bytes from dst to src, as counted by the metering profile"),
    _f("src2dst_tcp_flags", "u8", "OR of the TCP flags src sent (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32)"),
    _f("dst2src_tcp_flags", "u8", "OR of the TCP flags dst sent"),
    _f("end_reason", "u8", "Why the flow was exported: 0 idle, 1 active, 2 fin, 3 rst, 4 flush"),
    _f("tunnel_kind", "u8", "Outer encapsulation the flow was found in: 0 none, 1 GRE, 2 VXLAN, 3 IP-in-IP, 4 GTP, 5 Teredo"),
    _f("dns_query", "str", "First DNS query name seen in the flow"),
    _f("dns_qtype", "u16", "DNS query type of dns_query"),
    _f("dns_rcode", "u8", "DNS response code"),
    _f("tls_sni", "str", "TLS server name indication"),
    _f("tls_version", "u16", "TLS version offered by the client (0x0303 = TLS 1.2)"),
    _f("tls_ja4", "str", "JA4 fingerprint of the TLS client hello"),
    _f("http_host", "str", "HTTP Host header of the first request"),
    _f("http_method", "str", "HTTP method of the first request", lc=True),
    _f("http_uri", "str", "HTTP request URI of the first request"),
    _f("http_status", "u16", "HTTP status of the first response"),
    _f("ssh_banner", "str", "SSH client banner"),
    _f("dns_queries", "str", "List: every distinct DNS question of the flow as name/qtype, one per line "
       "(LIST_SEP), at most MAX_DNS_QUERIES"),
    _f("http_requests", "str", "List: every HTTP request of the flow as method TAB host TAB uri TAB status "
       "TAB response content type, one per line (LIST_SEP), at most MAX_HTTP_REQUESTS"),
    _f("app_markers", "str", "List: application markers seen in the flow, sorted, comma-separated "
       "(smb1, smb2, smb1_trans2_session_setup, exe_from_dst, shell_from_src, icmp_text ...)"),
), doc="A bidirectional flow, metered at an institution's tap or received as flow export.")

ALERT = RecordType("alert", 2, 1, TOPICS["alerts"], (
    _f("alert_id", "str", "Deterministic id (detector, institution, entity, window): a redelivered batch repeats it"),
    _f("time_ms", "i64", "Time of the traffic that made the detector fire, ms since the Unix epoch", codec="DoubleDelta"),
    _f("first_seen_ms", "i64", "Start of the evidence window, ms since the Unix epoch", codec="DoubleDelta"),
    _f("institution_id", "str", "Institution where the activity was seen", lc=True),
    _f("entity", "str", "The entity the alert is about (an address, usually the attacker)"),
    _f("entity_kind", "str", "What entity is: src_ip, dst_ip, pair, service, institution", lc=True),
    _f("target", "str", "The victim or target where one is known (address, address:port)"),
    _f("detector", "str", "Name of the detector that fired", lc=True),
    _f("technique", "str", "MITRE ATT&CK technique id, e.g. T1046", lc=True),
    _f("severity", "u8", "1 info, 2 low, 3 medium, 4 high, 5 critical"),
    _f("score", "f64", "Detector score; higher is more anomalous"),
    _f("confidence", "f64", "0..1, how sure the detector is"),
    _f("evidence", "str", "JSON: the feature values and a sample of flow ids that made it fire"),
), doc="A detection about one entity at one institution.")

HEARTBEAT = RecordType("heartbeat", 3, 1, TOPICS["heartbeats"], (
    _f("time_ms", "i64", "Agent clock when the heartbeat was sent, ms since the Unix epoch"),
    _f("institution_id", "str", "Institution the agent belongs to", lc=True),
    _f("sensor_id", "str", "Sensor id of the agent", lc=True),
    _f("packets", "u64", "Packets metered since the agent started"),
    _f("drops", "u64", "Packets dropped (kernel or malformed) since the agent started"),
    _f("flows", "u64", "Flows exported since the agent started"),
    _f("spool_batches", "u64", "Batches waiting in the agent's on-disk spool"),
    _f("version", "str", "finsa version of the agent", lc=True),
), doc="An agent's periodic sign of life and health.")

WARNING = RecordType("warning", 4, 1, TOPICS["warnings"], (
    _f("warning_id", "str", "Deterministic warning id: the same situation repeats it"),
    _f("time_ms", "i64", "When the warning was issued (flow time), ms since the Unix epoch", codec="DoubleDelta"),
    _f("campaign_id", "str", "Campaign that caused it, '' when none"),
    _f("scope_kind", "str", "Audience: institution, subsector, region or sector", lc=True),
    _f("scope_id", "str", "Institution id, subsector or region name; '' for the sector"),
    _f("severity", "u8", "1 info .. 5 critical"),
    _f("title", "str", "Short human title"),
    _f("body", "str", "What happened, why this audience is warned, and what to do"),
    _f("indicators", "str", "JSON array of indicators to block (addresses, prefixes, domains, JA4 ...)"),
    _f("techniques", "str", "JSON array of MITRE ATT&CK technique ids"),
    _f("status", "str", "issued, updated or withdrawn", lc=True),
), doc="An early warning, issued before an attack reaches its audience.")

CAMPAIGN = RecordType("campaign", 5, 1, TOPICS["campaigns"], (
    _f("campaign_id", "str", "Deterministic campaign id (same activity, same id)"),
    _f("first_seen_ms", "i64", "First alert of the campaign, ms since the Unix epoch", codec="DoubleDelta"),
    _f("last_seen_ms", "i64", "Latest alert of the campaign (the row version)", codec="DoubleDelta"),
    _f("title", "str", "Short human title"),
    _f("kind", "str", "What links the alerts: same source, same technique, same target ...", lc=True),
    _f("severity", "u8", "1 info .. 5 critical"),
    _f("score", "f64", "Campaign score; higher is worse"),
    _f("status", "str", "active or closed", lc=True),
    _f("institutions", "str", "JSON array of the institution ids hit, in the order they were hit"),
    _f("institutions_hit", "u32", "How many institutions were hit"),
    _f("entities", "str", "JSON array of the entities (attacker addresses ...)"),
    _f("techniques", "str", "JSON array of MITRE ATT&CK technique ids"),
    _f("alerts", "u64", "Alerts attached to the campaign"),
    _f("summary", "str", "Free text for analysts: subsectors, spread over time, indicators"),
), doc="Alerts from several institutions joined by what they share.")

LEVEL = RecordType("level", 6, 1, TOPICS["levels"], (
    _f("time_ms", "i64", "End of the evaluated minute (flow time), ms since the Unix epoch", codec="DoubleDelta"),
    _f("scope_kind", "str", "institution, subsector, region or sector", lc=True),
    _f("scope_id", "str", "Institution id, subsector or region name; '' for the sector", lc=True),
    _f("level", "u8", "Threat level 1 normal .. 5 severe"),
    _f("score", "f64", "Score the level was derived from"),
    _f("contributions", "str", "JSON {factor: points}: what made up the score"),
), doc="A threat level at one minute, with what explains it.")

EMERGENCY = RecordType("emergency", 7, 1, TOPICS["emergencies"], (
    _f("emergency_id", "str", "Deterministic id"),
    _f("time_ms", "i64", "When it was raised or cleared, ms since the Unix epoch", codec="DoubleDelta"),
    _f("institution_id", "str", "Institution concerned", lc=True),
    _f("sensor_id", "str", "Sensor concerned, '' for the whole institution", lc=True),
    _f("kind", "str", "dark_flows, heartbeat_lost, no_data or clock_offset", lc=True),
    _f("severity", "u8", "1 info .. 5 critical"),
    _f("active", "u8", "1 while it lasts, 0 when cleared"),
    _f("why", "str", "What was seen, for a person"),
    _f("evidence", "str", "JSON: the figures behind it"),
), doc="An institution going dark, or a data-quality problem, apart from attacks.")

#: ARP travels on the flow topic, partitioned like the flows of the same tap, so one worker sees a
#: network segment's traffic and its address bindings together.
ARP = RecordType("arp", 8, 1, TOPICS["flows"], (
    _f("first_seen_ms", "i64", "First ARP packet of this binding in the batch, ms since the Unix epoch", codec="DoubleDelta"),
    _f("last_seen_ms", "i64", "Last ARP packet of this binding in the batch, ms since the Unix epoch", codec="DoubleDelta"),
    _f("institution_id", "str", "Institution whose sensor saw the ARP packets", lc=True),
    _f("sensor_id", "str", "Sensor (collector agent) that saw them", lc=True),
    _f("vlan_id", "u16", "Innermost 802.1Q VLAN id, 0 when untagged"),
    _f("ip", "ip", "Sender protocol address: the IPv4 address claimed (IPv4-mapped IPv6)"),
    _f("mac", "u64", "Sender hardware address claiming it (48 bits; MACNumToString in SQL)"),
    _f("requests", "u32", "ARP requests sent with this binding"),
    _f("replies", "u32", "ARP replies sent with this binding (is-at)"),
    _f("gratuitous", "u32", "Of those, gratuitous: sender and target address equal (announcements)"),
    _f("eth_mismatch", "u32", "Packets whose Ethernet source differs from the ARP sender hardware address"),
), doc="An IPv4-to-MAC binding claimed in ARP packets at a tap, per batch (for spoofing detection).")

RECORD_TYPES = {rt.code: rt for rt in (FLOW, ALERT, HEARTBEAT, WARNING, CAMPAIGN, LEVEL, EMERGENCY, ARP)}


@dataclass
class RecordBatch:
    """Columns of one batch of records: a dict of equal-length numpy arrays.

    >>> b = ALERT.make_batch({"entity": ["203.0.113.9"], "severity": [4]})
    >>> len(b), b.rows()[0]["severity"]
    (1, 4)
    """

    type: RecordType
    columns: dict[str, np.ndarray]
    batch_id: bytes = field(default_factory=lambda: new_batch_id())

    def __len__(self) -> int:
        first = next(iter(self.columns.values()), None)
        return 0 if first is None else len(first)

    @property
    def batch_id_hex(self) -> str:
        return self.batch_id.hex()

    def take(self, index: np.ndarray | slice, batch_id: bytes | None = None) -> "RecordBatch":
        """Rows selected by a boolean mask, an index array or a slice, as a new batch."""
        return RecordBatch(self.type, {k: v[index] for k, v in self.columns.items()},
                           batch_id or new_batch_id())

    def rows(self) -> list[dict[str, Any]]:
        """Rows as plain dicts (addresses as text): for printing, not for hot paths."""
        out_cols: dict[str, list] = {}
        for f in self.type.fields:
            col = self.columns[f.name]
            out_cols[f.name] = ips_to_strings(col) if f.kind == "ip" else col.tolist()
        return [dict(zip(out_cols, values)) for values in zip(*out_cols.values())]

    @staticmethod
    def concat(batches: Sequence["RecordBatch"], batch_id: bytes | None = None) -> "RecordBatch":
        if not batches:
            raise ValueError("concat needs at least one batch")
        rtype = batches[0].type
        cols = {f.name: np.concatenate([b.columns[f.name] for b in batches]) for f in rtype.fields}
        return RecordBatch(rtype, cols, batch_id or new_batch_id())


def new_batch_id() -> bytes:
    """A fresh random 16-byte batch id."""
    return uuid.uuid4().bytes


def split_list(text: str, sep: str = LIST_SEP) -> list[str]:
    """The items of a list-valued string field ('' is the empty list).

    >>> split_list("a.example/1\\nb.example/16"), split_list("")
    (['a.example/1', 'b.example/16'], [])
    """
    return text.split(sep) if text else []


# --- addresses ---------------------------------------------------------------------------

_V4_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


def ip_to_bytes(text: str) -> bytes:
    """16 bytes of an address; IPv4 becomes IPv4-mapped IPv6. Empty text gives 16 zero bytes."""
    if not text:
        return bytes(16)
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return bytes(10) + b"\xff\xff" + addr.packed
    return addr.packed


def ips_from_strings(values: Iterable[str] | str) -> np.ndarray:
    """An (n, 16) uint8 array from address strings."""
    if isinstance(values, str):
        values = [values]
    try:
        raw = b"".join(ip_to_bytes(v) for v in values)
    except ValueError as exc:
        raise WireFormatError("bad_address", str(exc)) from None
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16).copy()


def ipv4_to_mapped(addresses: np.ndarray) -> np.ndarray:
    """An (n, 16) uint8 array from IPv4 addresses held as host-order uint32."""
    n = len(addresses)
    out = np.zeros((n, 16), dtype=np.uint8)
    out[:, 10:12] = 0xFF
    out[:, 12:16] = addresses.astype(">u4").view(np.uint8).reshape(n, 4)
    return out


def ips_to_strings(column: np.ndarray) -> list[str]:
    """Address strings from an (n, 16) uint8 array (IPv4-mapped shown as dotted quad)."""
    if len(column) == 0:
        return []
    keys = np.ascontiguousarray(column).view("V16").ravel()
    uniques, inverse = np.unique(keys, return_inverse=True)
    texts = np.array([_ip_text(u.tobytes()) for u in uniques], dtype=object)
    return texts[inverse.ravel()].tolist()


_TEXTS: dict[bytes, str] = {}  # address -> text, for the addresses formatted lately (detectors ask again and again)
_MAX_TEXTS = 65_536


def _ip_text(raw: bytes) -> str:
    text = _TEXTS.get(raw)
    if text is None:
        if len(_TEXTS) >= _MAX_TEXTS:
            _TEXTS.clear()
        text = _TEXTS[raw] = _format_ip(raw)
    return text


def _format_ip(raw: bytes) -> str:
    if raw == bytes(16):
        return ""
    if raw[:12] == bytes(10) + b"\xff\xff":
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


# --- codec -------------------------------------------------------------------------------

def _code_dtype(n_unique: int) -> str:
    return "<u1" if n_unique <= 0x100 else "<u2" if n_unique <= 0x10000 else "<u4"


def _encode_strings(values: np.ndarray) -> bytes:
    # Dictionary in order of first appearance; dict.fromkeys and map run the loops in C.
    items = values.tolist()
    if items and type(items[0]) is str and items[-1] == items[0] and items.count(items[0]) == len(items):
        # one value in every row (an institution id, a field no flow had): list.count compares by
        # identity first, several times quicker than building the dictionary; the same bytes
        blob = items[0].encode("utf-8")
        return struct.pack("<II", 1, len(blob)) + blob + bytes(len(items))
    firsts = dict.fromkeys(items)
    if not all(type(k) is str for k in firsts):  # None or non-str values: normalise first
        items = ["" if v is None else str(v) for v in items]
        firsts = dict.fromkeys(items)
    blobs = [s.encode("utf-8") for s in firsts]
    lengths = np.fromiter((len(b) for b in blobs), dtype="<u4", count=len(blobs))
    if len(blobs) == 1:  # one value in every row (an institution id, a name no flow had): codes all 0
        narrow = np.zeros(len(items), dtype="<u1")
    else:
        lookup = {k: i for i, k in enumerate(firsts)}
        narrow = np.fromiter(map(lookup.__getitem__, items), dtype="<u4", count=len(items)).astype(
            _code_dtype(len(blobs)))
    return struct.pack("<I", len(blobs)) + lengths.tobytes() + b"".join(blobs) + narrow.tobytes()


def _decode_strings(payload: memoryview, n_rows: int) -> np.ndarray:
    if len(payload) < 4:
        raise WireFormatError("truncated", "string column header")
    (n_unique,) = struct.unpack_from("<I", payload)
    code_dtype = np.dtype(_code_dtype(n_unique))
    if n_unique > max(n_rows, 1) or 4 + 4 * n_unique + code_dtype.itemsize * n_rows > len(payload):
        raise WireFormatError("bad_column", "string dictionary larger than the column")
    lengths = np.frombuffer(payload, dtype="<u4", count=n_unique, offset=4).tolist()
    blob_start = 4 + 4 * n_unique
    blob_end = blob_start + sum(lengths)
    if blob_end + code_dtype.itemsize * n_rows != len(payload):
        raise WireFormatError("bad_column", "string column length mismatch")
    ends = np.cumsum(lengths, dtype=np.int64).tolist()
    starts = [0, *ends[:-1]]
    blob = bytes(payload[blob_start:blob_end])
    try:
        if blob.isascii():  # one decode of the whole dictionary: byte offsets are character offsets
            text = blob.decode("ascii")
            values = [text[s:e] for s, e in zip(starts, ends)]
        else:
            values = [blob[s:e].decode("utf-8") for s, e in zip(starts, ends)]
    except UnicodeDecodeError as exc:
        raise WireFormatError("bad_utf8", str(exc)) from None
    uniques = np.array(values or [""], dtype=object)
    codes = np.frombuffer(payload, dtype=code_dtype, count=n_rows, offset=blob_end)
    if n_rows and int(codes.max()) >= max(n_unique, 1):
        raise WireFormatError("bad_column", "string code out of range")
    return uniques[codes] if n_rows else np.empty(0, dtype=object)


def _encode_column(f: Field, col: np.ndarray) -> bytes:
    if f.kind == "str":
        return _encode_strings(col)
    if f.kind == "ip":
        return np.ascontiguousarray(col, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(col, dtype=_NUMERIC[f.kind]).tobytes()


def encode_batch(batch: RecordBatch, compress: bool = False) -> bytes:
    """Serialise a batch to the columnar wire format (see the module docstring)."""
    rtype = batch.type
    n_rows = len(batch)
    parts = []
    for f in rtype.fields:
        payload = _encode_column(f, batch.columns[f.name])
        name = f.name.encode()
        parts.append(struct.pack("<B", len(name)) + name + struct.pack("<BI", _KIND_CODES[f.kind], len(payload)))
        parts.append(payload)
    raw = b"".join(parts)
    body = zlib.compress(raw, 1) if compress else raw
    flags = FLAG_ZLIB if compress else 0
    header = _HEADER.pack(MAGIC, CODEC_VERSION, rtype.code, flags, rtype.version, len(rtype.fields),
                          n_rows, batch.batch_id, len(body), len(raw), zlib.crc32(body), b"\0" * 4)
    return header + body


def decode_batch(data: bytes | bytearray | memoryview, expect: RecordType | None = None) -> RecordBatch:
    """Parse a wire batch; raise WireFormatError (with a reason) on anything malformed."""
    if len(data) < HEADER_BYTES:
        raise WireFormatError("truncated", f"{len(data)} bytes is shorter than the header")
    if len(data) > MAX_BATCH_BYTES:
        raise WireFormatError("oversized", f"{len(data)} bytes")
    (magic, codec, code, flags, version, n_columns, n_rows, batch_id, body_len, raw_len, crc,
     _) = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireFormatError("bad_magic", repr(bytes(magic)))
    if codec != CODEC_VERSION:
        raise WireFormatError("unsupported_codec", str(codec))
    rtype = RECORD_TYPES.get(code)
    if rtype is None:
        raise WireFormatError("unknown_record_type", str(code))
    if expect is not None and rtype is not expect:
        raise WireFormatError("wrong_record_type", f"expected {expect.name}, got {rtype.name}")
    if version != rtype.version:
        raise WireFormatError("unsupported_schema", f"{rtype.name} v{version}")
    if n_rows > MAX_BATCH_ROWS or raw_len > MAX_BATCH_BYTES:
        raise WireFormatError("oversized", f"{n_rows} rows, {raw_len} bytes")
    body = memoryview(data)[HEADER_BYTES:]
    if len(body) != body_len:
        raise WireFormatError("truncated", f"body is {len(body)} bytes, header says {body_len}")
    if zlib.crc32(body) != crc:
        raise WireFormatError("bad_checksum")
    if flags & FLAG_ZLIB:
        body = memoryview(_inflate(body, raw_len))
    elif raw_len != body_len:
        raise WireFormatError("bad_header", "raw and body lengths differ without compression")
    columns = _decode_body(rtype, body, n_columns, n_rows)
    if n_rows and not columns:  # every decoded column has n_rows rows; none at all proves nothing
        raise WireFormatError("bad_header", f"{n_rows} rows but no {rtype.name} column")
    full = {f.name: columns[f.name] if f.name in columns else f.empty(n_rows) for f in rtype.fields}
    return RecordBatch(rtype, full, bytes(batch_id))


def _inflate(body: memoryview, raw_len: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, raw_len + 1)
    except zlib.error as exc:
        raise WireFormatError("bad_compression", str(exc)) from None
    if len(out) != raw_len or inflater.unconsumed_tail:
        raise WireFormatError("bad_compression", "inflated size differs from the header")
    return out


def _decode_body(rtype: RecordType, body: memoryview, n_columns: int, n_rows: int) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    pos = 0
    for _ in range(n_columns):
        if pos + 1 > len(body):
            raise WireFormatError("truncated", "column header")
        name_len = body[pos]
        end_name = pos + 1 + name_len
        if end_name + 5 > len(body):
            raise WireFormatError("truncated", "column header")
        name = bytes(body[pos + 1:end_name]).decode("utf-8", "replace")
        kind_code, payload_len = struct.unpack_from("<BI", body, end_name)
        start = end_name + 5
        if start + payload_len > len(body):
            raise WireFormatError("truncated", f"column {name}")
        payload = body[start:start + payload_len]
        pos = start + payload_len
        kind = _CODE_KINDS.get(kind_code)
        known = rtype._index.get(name)
        if known is None:
            continue  # a newer producer's extra column: ignored
        if kind != known.kind:
            raise WireFormatError("bad_column", f"{name} is {kind}, expected {known.kind}")
        columns[name] = _decode_payload(known, payload, n_rows)
    if pos != len(body):
        raise WireFormatError("trailing_bytes", f"{len(body) - pos} bytes after the last column")
    return columns


def _decode_payload(f: Field, payload: memoryview, n_rows: int) -> np.ndarray:
    if f.kind == "str":
        return _decode_strings(payload, n_rows)
    width = 16 if f.kind == "ip" else np.dtype(_NUMERIC[f.kind]).itemsize
    if len(payload) != width * n_rows:
        raise WireFormatError("bad_column", f"{f.name}: {len(payload)} bytes for {n_rows} rows")
    if f.kind == "ip":
        return np.frombuffer(payload, dtype=np.uint8).reshape(n_rows, 16)
    arr = np.frombuffer(payload, dtype=_NUMERIC[f.kind])
    if f.kind == "f64" and not np.isfinite(arr).all():
        raise WireFormatError("not_finite", f"column {f.name} has NaN or infinity")
    return arr
