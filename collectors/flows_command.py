"""``finsa flows CAPTURE``: meter a capture offline and print its flows (no broker).

Rows carry the wire record's column names (finsa.wire.FLOW), addresses as text, in CSV (like
nfstream's ``to_csv``), JSON lines or Parquet. A summary of skipped packets goes to stderr. Exit
code 0 for a capture that was read, 2 with a one-line error for one that is not a capture.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import IO, Any

from finsa.errors import CaptureError, ConfigError
from finsa.wire import FLOW, RecordBatch

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
    """Writes flow batches in one format to a text or binary stream."""

    def __init__(self, fmt: str, path: str) -> None:
        self.fmt, self.path = fmt, path
        self._stream: IO | None = None
        self._csv: csv.DictWriter | None = None
        self._parquet: Any = None  # a pyarrow ParquetWriter, made on the first batch
        self.rows = 0

    def _open(self) -> IO:
        if self._stream is None:
            binary = self.fmt == "parquet"
            if self.path == "-":
                self._stream = sys.stdout.buffer if binary else sys.stdout
            else:
                self._stream = open(self.path, "wb" if binary else "w", newline="" if not binary else None)
        return self._stream

    def write(self, batch: RecordBatch) -> None:
        rows = batch.rows()
        self.rows += len(rows)
        stream = self._open()
        if self.fmt == "csv":
            if self._csv is None:
                self._csv = csv.DictWriter(stream, fieldnames=list(FLOW.names), lineterminator="\n")
                self._csv.writeheader()
            self._csv.writerows(rows)
        elif self.fmt == "jsonl":
            stream.writelines(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
        else:
            self._write_parquet(rows, stream)

    def _write_parquet(self, rows: list[dict], stream: IO) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows, schema=_arrow_schema())
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(stream, table.schema)
        self._parquet.write_table(table)

    def close(self, complete: bool = True) -> None:
        if complete and self.fmt == "csv" and self._csv is None:
            self.write(FLOW.make_batch({}, n_rows=0))  # header only
        if complete and self.fmt == "parquet" and self._parquet is None:
            self._write_parquet([], self._open())
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
