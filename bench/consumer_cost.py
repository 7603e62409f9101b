"""``python -m bench.consumer_cost``: CPU seconds to consume the same flow messages from Tansu with
aiokafka (the client Faust drives) and with confluent-kafka (librdkafka), each in its own process.

The messages are real wire flow batches (the bench agent's metering of ``../shared/data``),
``--rows`` flows each (default 570, the pipeline bench agent's mean, and 5,000), on a 4-partition
topic. Each client joins a consumer group, reads every message (value bytes taken, nothing
decoded) and commits offsets every ``--commit-every`` messages, as a worker would; the figure is
the consuming process's CPU seconds (all its threads, librdkafka's included) per GB and per
1,000 messages, after the join. No acks or Faust events: this is the client's own cost, the most
a change of client could save.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time

TOPIC = "bench.consumer-cost"


def _payloads(rows: int, count: int) -> list[bytes]:
    import glob

    from bench.pipeline import DATA
    from bench.pipeline_agent import meter_capture
    from finsa import wire
    from finsa.collectors.agent.pseudonym import Pseudonymiser

    pseudo = Pseudonymiser(bytes(32), ("10.0.0.0/8",))
    flows: list = []
    for path in sorted(glob.glob(str(DATA / "**" / "*.pcap*"), recursive=True)):
        flows += [b for b in meter_capture(path, "bank-a", pseudo)[0] if b.type is wire.FLOW]
        if sum(map(len, flows)) >= rows * 4:
            break
    joined = wire.RecordBatch.concat(flows)
    parts = [joined.take(slice(i * rows % max(len(joined) - rows, 1), i * rows % max(len(joined) - rows, 1) + rows))
             for i in range(8)]
    return [wire.encode_batch(parts[i % 8]) for i in range(count)]


def _aiokafka(bootstrap: str, total: int, commit_every: int, out) -> None:
    from aiokafka import AIOKafkaConsumer

    async def main() -> None:
        consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id="cost-aiokafka",
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_partition_fetch_bytes=16 * 2**20, fetch_max_wait_ms=1500,
                                    max_poll_records=64, session_timeout_ms=6000, heartbeat_interval_ms=1000)
        await consumer.start()
        first = await consumer.getmany(timeout_ms=30_000)
        cpu0, seen, size = time.process_time(), 0, 0
        batches = [first]
        while seen < total:
            for records in batches.pop().values():
                for record in records:
                    seen += 1
                    size += len(record.value)
                    if seen % commit_every == 0:
                        await consumer.commit()
            if seen < total:
                batches.append(await consumer.getmany(timeout_ms=5000))
        await consumer.commit()
        out.put({"cpu_s": time.process_time() - cpu0, "messages": seen, "bytes": size})
        await consumer.stop()

    asyncio.run(main())


def _confluent(bootstrap: str, total: int, commit_every: int, out) -> None:
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "cost-confluent", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.max.bytes": 64 * 2**20,
                         "max.partition.fetch.bytes": 16 * 2**20, "fetch.wait.max.ms": 1500,
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    consumer.subscribe([TOPIC])
    msgs = []
    while not msgs:
        msgs = consumer.consume(64, 1.0)
    cpu0, seen, size = time.process_time(), 0, 0
    while True:
        for msg in msgs:
            if msg.error() is None:
                seen += 1
                size += len(msg.value())
                if seen % commit_every == 0:
                    consumer.commit(asynchronous=False)
        if seen >= total:
            break
        msgs = consumer.consume(64, 5.0)
    consumer.commit(asynchronous=False)
    out.put({"cpu_s": time.process_time() - cpu0, "messages": seen, "bytes": size})
    consumer.close()


def measure(rows: int, count: int, commit_every: int) -> dict[str, dict]:
    from confluent_kafka import Producer

    from finsa.kafka import ensure_topics
    from finsa.streams.broker import EmbeddedBroker

    payloads = _payloads(rows, count)
    results = {}
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, {TOPIC: 4})
        producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 16 * 2**20, "linger.ms": 20})
        for i, payload in enumerate(payloads):
            while True:
                try:
                    producer.produce(TOPIC, payload, key=str(i % 8).encode())
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.flush(60)
        ctx = multiprocessing.get_context("spawn")
        for name, fn in (("aiokafka", _aiokafka), ("confluent-kafka", _confluent)):
            out = ctx.Queue()
            proc = ctx.Process(target=fn, args=(broker.bootstrap, count, commit_every, out))
            proc.start()
            results[name] = out.get(timeout=300)
            proc.join(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.consumer_cost")
    parser.add_argument("--rows", type=int, nargs="+", default=[570, 5000])
    parser.add_argument("--megabytes", type=int, default=300, help="about this much of messages per size")
    parser.add_argument("--commit-every", type=int, default=64)
    args = parser.parse_args()
    print(f"# load average {os.getloadavg()[0]:.1f}")
    for rows in args.rows:
        count = max(int(args.megabytes * 2**20 / (rows * 120)), 100)
        for name, r in measure(rows, count, args.commit_every).items():
            print(json.dumps({"client": name, "rows": rows, **r,
                              "cpu_s_per_gb": round(r["cpu_s"] / (r["bytes"] / 1e9), 2),
                              "cpu_ms_per_1k_messages": round(1e6 * r["cpu_s"] / r["messages"], 1)}))


if __name__ == "__main__":
    main()
