"""``finsa flows CAPTURE``: meter a capture offline and print its flows (no broker).

Rows carry the wire record's column names (finsa.wire.FLOW), addresses as text, in CSV (like
nfstream's ``to_csv``), JSON lines or Parquet. A summary of skipped packets goes to stderr. Exit
code 0 for a capture that was read, 2 with a one-line error for one that is not a capture.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import IO, Any

import numpy as np

from finsa.collectors.csv_rows import csv_chunks
from finsa.errors import CaptureError, ConfigError
from finsa.wire import FLOW, RecordBatch, ips_to_strings

FORMATS = ("csv", "jsonl", "parquet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", help="pcap or pcapng file, or - for standard input")
    parser.add_argument("--profile", choices=("nfstream", "zeek", "agent"), default="nfstream",
                        help="metering rules (default: nfstream)")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="output format (default: csv)")
    parser.add_argument("--output", "-o", default="-", help="output file (default: standard output)")
    parser.add_argument("--idle-timeout", type=float, metavar="S", help="idle timeout in seconds")
    parser.add_argument("--active-timeout", type=float, metavar="S", help="active timeout in seconds")
    parser.add_argument("--institution", default="", help="institution id written in every flow")
    parser.add_argument("--sensor", default="", help="sensor id written in every flow")


class _Writer:
    """Writes flow batches in one format to a text or binary stream.

    CSV output is byte for byte what Python's ``csv`` module writes (``QUOTE_MINIMAL``): a batch
    with nothing to quote is written by one compiled pass over its rows
    (:func:`finsa.collectors.csv_rows.csv_chunks`, no Arrow); a batch with a text value that needs
    quoting (a comma, quote or line break, e.g. in an HTTP URI) by the ``csv`` module. Parquet
    goes through Arrow a whole batch at a time; CSV and JSON lines do not need pyarrow.
    """

    def __init__(self, fmt: str, path: str) -> None:
        self.fmt, self.path = fmt, path
        self._stream: IO | None = None
        self._header = False
        self._parquet: Any = None  # a pyarrow ParquetWriter, made on the first batch
        self.rows = 0

    def _open(self) -> IO:
        if self._stream is None:
            binary = self.fmt in ("parquet", "csv")
            if self.path == "-":
                self._stream = sys.stdout.buffer if binary else sys.stdout
            else:
                self._stream = open(self.path, "wb" if binary else "w")
        return self._stream

    def write(self, batch: RecordBatch) -> None:
        self.rows += len(batch)
        stream = self._open()
        if self.fmt == "csv":
            self._write_csv(batch, stream)
        elif self.fmt == "jsonl":
            stream.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in batch.rows())
        else:
            self._write_parquet(arrow_table(batch), stream)

    def _write_csv(self, batch: RecordBatch, stream: IO) -> None:
        if not self._header:
            stream.write((",".join(FLOW.names) + "\n").encode())
            self._header = True
        if not len(batch):
            return
        chunks = csv_chunks(batch, FLOW)
        if chunks is None:  # a text value needs quoting: the csv module writes the batch (no Arrow:
            # an agent installed without pyarrow writes CSV too), column by column as rows() reads it
            columns = [ips_to_strings(batch.columns[f.name]) if f.kind == "ip" else batch.columns[f.name].tolist()
                       for f in FLOW.fields]
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(zip(*columns))
            stream.write(text.getvalue().encode())
            return
        for chunk in chunks:
            stream.write(chunk)

    def _write_parquet(self, table: Any, stream: IO) -> None:
        import pyarrow.parquet as pq

        if self._parquet is None:
            self._parquet = pq.ParquetWriter(stream, table.schema)
        self._parquet.write_table(table)

    def close(self, complete: bool = True) -> None:
        if complete and self.fmt == "csv" and not self._header:
            self.write(FLOW.make_batch({}, n_rows=0))  # header only
        if complete and self.fmt == "parquet" and self._parquet is None:
            self._write_parquet(arrow_table(FLOW.make_batch({}, n_rows=0)), self._open())
        if self._parquet is not None:
            self._parquet.close()
        if self._stream is not None:
            self._stream.flush()
            if self.path != "-":
                self._stream.close()


def _arrow_schema():
    import pyarrow as pa

    kinds = {"u8": pa.uint8(), "u16": pa.uint16(), "u32": pa.uint32(), "u64": pa.uint64(),
             "i64": pa.int64(), "f64": pa.float64(), "ip": pa.string(), "str": pa.string()}
    return pa.schema([(f.name, kinds[f.kind]) for f in FLOW.fields])


def arrow_table(batch: RecordBatch) -> Any:
    """The batch as an Arrow table of the FLOW schema (addresses as text), built column by column.

    >>> arrow_table(FLOW.make_batch({"src_ip": ["10.0.0.1"], "dst_port": [443]})).column("src_ip").to_pylist()
    ['10.0.0.1']
    """
    import pyarrow as pa

    schema = _arrow_schema()
    arrays = []
    n = len(batch)
    for f, pa_field in zip(FLOW.fields, schema):
        col = batch.columns[f.name]
        if f.kind in ("ip", "str"):
            distinct, codes = address_texts(col) if f.kind == "ip" else _distinct(col)
            arrays.append(_text_array(distinct, codes, n))
        else:  # Arrow arrays over the numpy buffers (pa.array on numpy would import pandas)
            values = np.ascontiguousarray(col, dtype=pa_field.type.to_pandas_dtype())
            arrays.append(pa.Array.from_buffers(pa_field.type, n, [None, pa.py_buffer(values)]))
    return pa.Table.from_arrays(arrays, schema=schema)


def _distinct(values: np.ndarray) -> tuple[list[str], np.ndarray | None]:
    """(distinct texts, code of each row); codes None when every row is the one text."""
    items = values.tolist()
    distinct = list(dict.fromkeys(items))
    if len(distinct) <= 1:
        return ["" if v is None else str(v) for v in distinct], None
    code_of = {v: i for i, v in enumerate(distinct)}
    codes = np.fromiter(map(code_of.__getitem__, items), dtype=np.intp, count=len(items))
    return ["" if v is None else str(v) for v in distinct], codes


def _text_array(distinct: list[str], codes: np.ndarray | None, n: int | None = None) -> Any:
    """An Arrow string array of ``distinct[codes]``, gathered with numpy (``pa.array`` would import
    pandas, ~0.4 s of a command's start); ``codes`` None: every row is ``distinct[0]``.

    >>> _text_array(["b", "", "é"], np.array([0, 1, 0, 2])).to_pylist()
    ['b', '', 'b', 'é']
    """
    import pyarrow as pa

    if codes is None:
        codes = np.zeros(n if n is not None else (1 if distinct else 0), dtype=np.intp)
    n = len(codes)
    if not distinct or distinct == [""]:
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(np.zeros(n + 1, np.int32)), pa.py_buffer(b"")])
    encoded = [v.encode() for v in distinct]
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    lengths = sizes[codes]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] >= 2**31:  # more than 2 GiB of text in one batch: Arrow's own (slower) path
        return pa.array([distinct[c] for c in codes.tolist()], type=pa.string())
    gather = np.repeat(starts[codes] - offsets[:-1], lengths) + np.arange(offsets[-1])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)[gather]
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])


_OCTETS = np.array([str(i) for i in range(256)])
_V4_MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


def address_texts(column: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(distinct address texts, code of each row) of an (n, 16) address column, as
    :func:`finsa.wire.ips_to_strings` writes them; IPv4 (the common case) formatted with numpy
    string ufuncs, IPv6 by ``ipaddress``.

    >>> from finsa.wire import ips_from_strings
    >>> texts, codes = address_texts(ips_from_strings(["10.1.2.3", "2001:db8::1", "10.1.2.3"]))
    >>> [texts[c] for c in codes]
    ['10.1.2.3', '2001:db8::1', '10.1.2.3']
    """
    if not len(column):
        return [], np.zeros(0, dtype=np.intp)
    raw, inverse = _distinct_addresses(np.ascontiguousarray(column, dtype=np.uint8))
    v4 = (raw[:, :12] == _V4_MAPPED).all(axis=1)
    texts = np.empty(len(raw), dtype=object)
    if v4.any():
        o = _OCTETS[raw[v4, 12:16]]
        dotted = np.strings.add(np.strings.add(np.strings.add(o[:, 0], "."), np.strings.add(o[:, 1], ".")),
                                np.strings.add(np.strings.add(o[:, 2], "."), o[:, 3]))
        texts[v4] = dotted.tolist()
    if not v4.all():
        texts[~v4] = ips_to_strings(np.ascontiguousarray(raw[~v4]))
    return texts.tolist(), inverse.ravel()


def _distinct_addresses(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows of an (n, 16) address column, index of each row among them).

    When every address's first eight bytes are zero (IPv4-mapped addresses: the usual capture),
    the distinct rows come from a sort of the last eight bytes as one 64-bit number, several
    times faster than sorting 16-byte rows.
    """
    words = column.view("<u8")
    if not words[:, 0].any():
        low, inverse = np.unique(words[:, 1], return_inverse=True)
        raw = np.zeros((len(low), 2), dtype="<u8")
        raw[:, 1] = low
        return raw.view(np.uint8), inverse
    uniques, inverse = np.unique(column.view("V16").ravel(), return_inverse=True)
    return uniques.view(np.uint8).reshape(-1, 16), inverse


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def main(args: argparse.Namespace) -> int:
    from finsa.collectors.meter.flowmeter import FlowMeter
    from finsa.collectors.pcap.capture import read_capture

    try:
        meter = FlowMeter(args.profile, args.institution, args.sensor,
                          idle_timeout_ms=_ms(args.idle_timeout), active_timeout_ms=_ms(args.active_timeout))
    except ConfigError as exc:
        print(f"finsa flows: {exc}", file=sys.stderr)
        return 2
    writer = _Writer(args.format, args.output)
    complete = False
    try:
        for packets in read_capture(args.capture):
            out = meter.add(packets)
            if out is not None:
                writer.write(out)
        out = meter.flush()
        if out is not None:
            writer.write(out)
        complete = True
    except CaptureError as exc:
        print(f"finsa flows: {exc}", file=sys.stderr)
        return 2
    finally:
        writer.close(complete)
    _summary(meter)
    return 0


def _summary(meter) -> None:
    stats = meter.stats
    skipped = stats["skipped"]
    text = ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items())) or "none"
    print(f"finsa flows: {stats['packets']} packets, {stats['flows']} flows; skipped: {text}",
          file=sys.stderr)
