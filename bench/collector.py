"""Collector benchmarks: pcap -> flows per tool, flow-table memory, flow-export decoding.

Every metering run happens in its own process (:func:`bench.measure.isolated`) on the same
cached capture; rates are packets per CPU second (the process and its children: nfstream
meters in a child process). scapy runs on a prefix of the capture and its rate is per packet
of that prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from bench.measure import Clock, isolated
from bench.report import Result, grid, table
from bench.synth import count_packets, distinct_capture, mixed_capture

__all__ = ["run", "export_sets"]

EXPORT_DIR = Path("/work/shared/data/export")
_AKVORADO_EXPORTER = "127.0.0.1"  # the exporter address the source tests substitute
EXPORT_SETS = {
    "IPFIX": ["akvorado/ipfix-ipfixprobe-templates.pcap", "akvorado/ipfix-ipfixprobe-data.pcap",
              "pmacct-test-automation/ipfix-cisco-asr9k.pcap",
              "pmacct-test-automation/ipfix-ipv6-cisco-sampling-option.pcap"],
    "NetFlow v9": ["akvorado/nfv9-options-template.pcap", "akvorado/nfv9-options-data.pcap",
                   "akvorado/nfv9-template.pcap", "akvorado/nfv9-data.pcap",
                   "pmacct-test-automation/nfv9-cisco-asr9k.pcap"],
    "NetFlow v5": ["akvorado/nfv5.pcap"],
    "sFlow v5": ["akvorado/sflow-data-1140.pcap", "akvorado/sflow-raw-ipv4.pcap",
                 "akvorado/sflow-expanded-ipv4-data.pcap"],
}


def _meter_row(tool: str, task: str, path: Path, packets: int, note: str = "", **kwargs) -> Result:
    out = isolated(task, path=str(path), **kwargs)
    done = out["packets"] if out["packets"] > 0 else packets
    text = f"{out['flows']:,} flows, wall {out['wall_s']:.1f} s" + (f"; {note}" if note else "")
    return Result(tool, done, out["cpu_s"], "cpu", text)


def metering(quick: bool, packets: int | None = None) -> str:
    """Table: packets per CPU second metering one capture into flows, per tool."""
    n = packets or (200_000 if quick else 2_000_000)
    path = mixed_capture(n)
    total = count_packets(path)
    prefix = min(total, 5_000 if quick else 100_000)
    rows = [
        _meter_row("finsa", "finsa", path, total, "meter_capture, nfstream profile, hints"),
        _meter_row("nfstream 6.6", "nfstream", path, total, "n_meters=1, nDPI on (20 packets)"),
        *([] if quick else [_meter_row("nfstream 6.6 no nDPI", "nfstream", path, total, "n_dissections=0",
                                       n_dissections=0)]),
        _meter_row("dpkt", "dpkt", path, total, "per-packet objects + dict table, dns/http hints"),
        _meter_row("scapy", "scapy", path, total, f"first {prefix:,} packets only, rate of that prefix",
                   limit=prefix),
    ]
    return table(f"collector: pcap -> flows ({total:,} packets, {path.name})", "pkt", rows)


def table_memory(quick: bool, flows: int = 1_000_000) -> str:
    """Table: peak RSS holding ``flows`` concurrent flows (no expiry, no flush)."""
    path = distinct_capture(flows)
    tasks = [("finsa", "finsa_table")] if quick else [("finsa", "finsa_table"), ("dpkt dict table", "dpkt"),
                                                      ("nfstream 6.6", "nfstream")]
    rows, base = [], None
    for tool, task in tasks:
        out = isolated(task, path=str(path))
        child = task == "nfstream"
        peak = out["child_peak_rss_bytes"] if child else out["peak_rss_bytes"]
        held = flows if child else out["flows"]
        per_flow = (peak - (0 if child else out["baseline_rss_bytes"])) / max(held, 1)
        base = base or per_flow
        end = "" if child else f"{out['end_rss_bytes'] / 2**20:,.0f}"
        rows.append([tool, f"{held:,}", f"{peak / 2**20:,.0f}", end, f"{per_flow:,.0f}", f"{per_flow / base:.2f}",
                     "metering process peak RSS (whole)" if child else "(peak RSS - RSS after imports) / flows"])
    headers = ["tool", "flows held", "peak RSS MiB", "RSS at end MiB", "bytes per flow", "ratio to finsa", "note"]
    return f"collector: memory holding {flows:,} concurrent flows\n{grid(headers, rows)}"


def export_sets() -> dict[str, list[tuple[str, bytes]]]:
    """(exporter, datagram) lists per protocol, in decode order, from the shared export captures."""
    from finsa.collectors.export.capture import export_datagrams

    out: dict[str, list[tuple[str, bytes]]] = {}
    for name, files in EXPORT_SETS.items():
        grams = []
        for rel in files:
            for source, payload, _ in export_datagrams(EXPORT_DIR / rel):
                grams.append((_AKVORADO_EXPORTER if rel.startswith("akvorado/") else source, payload))
        out[name] = grams
    return out


def export_decoding(quick: bool) -> str:
    """Table: records per CPU second decoded by ExportDecoder, per protocol."""
    from finsa.collectors.export.decoder import ExportDecoder

    if not EXPORT_DIR.exists():
        return "collector: flow-export decoding skipped (no /work/shared/data/export)"
    rows = []
    for name, grams in export_sets().items():
        repeats = max(1, (10_000 if quick else 200_000) // max(len(grams), 1))
        dec = ExportDecoder("bank-a", "edge-1", flow_id_base=1)
        records = 0
        clock = Clock()
        for r in range(repeats):
            dec.feed_many(grams, received_ms=1_772_442_000_000)
            if r % 50 == 49:
                records += len(dec.take() or ())
        records += len(dec.take() or ())
        rows.append(Result(f"finsa {name}", records, clock.cpu_s, "cpu",
                           f"{len(grams)} datagrams x {repeats:,}, {records / (len(grams) * repeats):.1f} records each"))
    return table("collector: flow-export decoding (ExportDecoder, real datagrams repeated)", "record", rows,
                 baseline=None)


def run(quick: bool, packets: int | None = None) -> Iterator[str]:
    """The collector tables, each yielded as soon as it is measured."""
    yield metering(quick, packets)
    yield table_memory(quick)
    yield export_decoding(quick)
