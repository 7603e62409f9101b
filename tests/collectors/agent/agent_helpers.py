"""Helpers shared by the agent tests: a config writer and a broker reader."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from finsa import wire

KEY_HEX = "5a" * 32


def write_config(tmp_path: Path, bootstrap: str, extra: str = "", pcap: Path | None = None,
                 heartbeat_s: float = 0.3, metrics: str = "127.0.0.1:0") -> Path:
    key = tmp_path / "pseudonym.key"
    key.write_text(KEY_HEX)
    if pcap is None:
        pcap = tmp_path / "unused.pcap"
        pcap.write_bytes(b"")
    path = tmp_path / "agent.toml"
    path.write_text(f'''institution_id = "bank-a"
sensor_id = "bank-a-tap1"
internal_networks = ["10.0.0.0/8", "fd00::/8"]
pseudonymisation_key_file = "{key}"
heartbeat_interval_s = {heartbeat_s}
metrics_listen = "{metrics}"
{extra}
[sources]
pcap_files = ["{pcap}"]
[broker]
bootstrap = "{bootstrap}"
message_timeout_ms = 3000
partitions = 2
[spool]
directory = "{tmp_path / 'spool'}"
''')
    return path


def flow_batch(i: int, rows: int = 20) -> wire.RecordBatch:
    """Flows from internal 10.0.<i>.x to external 198.51.100.x; flow ids encode (i, row)."""
    return wire.FLOW.make_batch({
        "flow_id": np.arange(rows, dtype=np.uint64) + i * 1000,
        "institution_id": ["bank-a"] * rows, "sensor_id": ["bank-a-tap1"] * rows,
        "src_ip": [f"10.0.{i % 256}.{r % 256}" for r in range(rows)],
        "dst_ip": [f"198.51.100.{r % 256}" for r in range(rows)],
        "src_port": np.full(rows, 40000), "dst_port": np.full(rows, 443), "protocol": np.full(rows, 6),
        "src2dst_packets": np.ones(rows), "dst2src_packets": np.ones(rows)})


def read_topic(bootstrap: str, topic: str, want: int, timeout_s: float = 30.0,
               partitions: int = 2, want_rows: int = 0) -> list[wire.RecordBatch]:
    """Batches of ``topic`` from the start, until ``want`` distinct batch ids (and ``want_rows``
    rows) arrived, or the timeout."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out: list[wire.RecordBatch] = []
    deadline = time.monotonic() + timeout_s
    try:
        while (len({b.batch_id for b in out}) < want or sum(map(len, out)) < want_rows) \
                and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append(wire.decode_batch(msg.value()))
    finally:
        consumer.close()
    return out


def wait_for(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()
