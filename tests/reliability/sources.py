"""What the fault tests feed finsa, and the source-side count to reconcile storage against.

* :func:`flow_batches` / :func:`publish`: FLOW batches with distinct flow ids, produced straight
  to the flow topic (the worker hop alone);
* :class:`NetflowExporter`: a NetFlow v5 exporter sending to an agent's ``export_listen``; record
  ``r`` of datagram ``k`` has ``src_port = 1024 + k`` and ``dst_port = 1 + r``, so every flow is
  known by (sensor, src_port, dst_port) and the order of datagrams is readable from storage.
  ``clock_offset_s`` skews the exporter's clock (the flow times it reports);
* :func:`agent_config`: a ``finsa collect --config`` file for such an agent.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import numpy as np

from finsa import wire
from finsa.kafka import ensure_topics, producer_config

_V5_HEADER = struct.Struct(">HHIIIIBBH")
_V5_RECORD = struct.Struct(">4s4s4sHHIIIIHHBBBBHHBBH")
RECORDS_PER_DATAGRAM = 30


def flow_batches(count: int, rows: int, institution: str = "bank-a", start_ms: int = 1_770_000_000_000
                 ) -> list[wire.RecordBatch]:
    """``count`` FLOW batches of ``rows`` rows; flow ids ``i * rows + r`` are distinct overall."""
    out = []
    for i in range(count):
        r = np.arange(rows)
        t = start_ms + i * 1000 + r
        out.append(wire.FLOW.make_batch({
            "flow_id": (i * rows + r).astype(np.uint64), "first_seen_ms": t, "last_seen_ms": t + 5,
            "institution_id": [institution] * rows, "sensor_id": [f"{institution}-tap1"] * rows,
            "ip_version": np.full(rows, 4), "protocol": np.full(rows, 6),
            "src_ip": [f"10.{i % 256}.{(x // 256) % 256}.{x % 256}" for x in r],
            "dst_ip": [f"198.51.100.{x % 200}" for x in r], "src_port": 20000 + r % 40000,
            "dst_port": np.full(rows, 443), "src2dst_packets": np.full(rows, 3), "src2dst_bytes": np.full(rows, 300),
            "dst2src_packets": np.full(rows, 2), "dst2src_bytes": np.full(rows, 900),
            "src2dst_tcp_flags": np.full(rows, 0x1A), "dst2src_tcp_flags": np.full(rows, 0x1A)}))
    return out


def publish(bootstrap: str, batches: list[wire.RecordBatch], partitions: int = 2) -> dict[int, int]:
    """Produce batches to the flow topic, spread over the partitions, and wait for the acks;
    returns {partition: offset after the last acknowledged message}."""
    from confluent_kafka import Producer

    ensure_topics(bootstrap, {wire.TOPICS["flows"]: partitions})
    producer = Producer(producer_config(bootstrap, "reliability-test"))
    ends = {p: 0 for p in range(partitions)}

    def acked(err, msg) -> None:
        if err is None:
            ends[msg.partition()] = max(ends[msg.partition()], msg.offset() + 1)

    for i, batch in enumerate(batches):
        producer.produce(wire.TOPICS["flows"], wire.encode_batch(batch), partition=i % partitions, on_delivery=acked)
        producer.poll(0)
    if producer.flush(30) != 0:
        raise AssertionError("the broker did not acknowledge every batch")
    return ends


class NetflowExporter:
    """Send NetFlow v5 datagrams to ``(host, port)``; counts what it sent (the source truth)."""

    def __init__(self, port: int, host: str = "127.0.0.1", clock_offset_s: float = 0.0,
                 src_ip: str = "192.0.2.10", scan: bool = False) -> None:
        self.addr, self.clock_offset_s, self.src_ip, self.scan = (host, port), clock_offset_s, src_ip, scan
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.datagrams = 0
        self.records = 0
        self._boot = time.time()

    def datagram(self, k: int, records: int = RECORDS_PER_DATAGRAM) -> bytes:
        now = time.time() + self.clock_offset_s
        uptime_ms = int((time.time() - self._boot) * 1000) + 60_000
        head = _V5_HEADER.pack(5, records, uptime_ms, int(now), int((now % 1) * 1e9), k, 0, 0, 0)
        body = b""
        for r in range(records):
            # a scan: SYN only, one packet, the scanner probing many ports of one host
            flags, packets = (0x02, 1) if self.scan else (0x1A, 4)
            body += _V5_RECORD.pack(socket.inet_aton(self.src_ip), socket.inet_aton(f"198.51.100.{1 + r % 200}"),
                                    bytes(4), 0, 0, packets, 60 * packets, uptime_ms - 500, uptime_ms - 100,
                                    1024 + k, 1 + r, 0, flags, 6, 0, 0, 0, 0, 0, 0)
        return head + body

    def send(self, count: int, pause_s: float = 0.0) -> None:
        """Send ``count`` more datagrams (numbered on from the last)."""
        for _ in range(count):
            self.sock.sendto(self.datagram(self.datagrams), self.addr)
            self.datagrams += 1
            self.records += RECORDS_PER_DATAGRAM
            if pause_s:
                time.sleep(pause_s)

    def close(self) -> None:
        self.sock.close()


def agent_config(directory: Path, bootstrap: str, listen_port: int, metrics_port: int,
                 institution: str = "bank-a", spool_dir: Path | None = None, max_bytes: int = 1 << 30,
                 segment_bytes: int = 1 << 20, heartbeat_s: float = 1.0, max_batch_rows: int = 10_000) -> Path:
    """Write an agent config (NetFlow on ``listen_port``, no pseudonymisation); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(f'''institution_id = "{institution}"
sensor_id = "{institution}-edge1"
metrics_listen = "127.0.0.1:{metrics_port}"
heartbeat_interval_s = {heartbeat_s}
max_batch_rows = {max_batch_rows}

[sources]
export_listen = ["127.0.0.1:{listen_port}"]

[broker]
bootstrap = "{bootstrap}"
message_timeout_ms = 5000
partitions = 2

[spool]
directory = "{spool_dir or directory / 'spool'}"
max_bytes = {max_bytes}
segment_bytes = {segment_bytes}
''')
    return path
