"""The collector side of ``python -m bench pipeline``, in its own process, as an agent would run.

``python -m bench.pipeline_agent < ARGS.json`` (``{"bootstrap": ..., "rate": ..., ...}`` on one line) meters real captures
with :class:`~finsa.collectors.meter.flowmeter.FlowMeter` (the agent profile) and
:func:`~finsa.collectors.meter.arp_bindings.arp_bindings`, capture after capture and round after
round (round ``r`` meters as institution ``r mod N``, so every institution sends), pseudonymises
internal addresses with the institution's Crypto-PAn key, and publishes signed wire batches to
the broker at ``rate`` flows per second for ``seconds``. A capture is metered only when fewer than
``batch_rows`` metered flows wait, so metering runs at the offered rate, not ahead of it.

Each flow's times are moved so that it ends at the moment its batch is handed to the producer
(its duration kept): "a flow's end" in the pipeline's latencies is that moment (the meter's own
idle timeout is not counted: a capture is metered whole). Prints one JSON line: flows and ARP
bindings sent, packets metered, and this process's CPU seconds. With ``"wait_for_go": true`` it
prints ``ready`` once built and waits for a second line on stdin before sending: ``bench pipeline
--agents N`` starts N of them, each with a share of the institutions, all at once.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from finsa import wire
from finsa.collectors.agent.publisher import BatchPublisher
from finsa.collectors.agent.pseudonym import Pseudonymiser
from finsa.collectors.meter.arp_bindings import arp_bindings
from finsa.collectors.meter.flowmeter import FlowMeter
from finsa.collectors.pcap.capture import read_capture

INTERNAL_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def meter_capture(path: str, institution: str, pseudo: Pseudonymiser,
                  pseudo_cpu_s: list[float] | None = None) -> tuple[list[wire.RecordBatch], int]:
    """Flow and ARP-binding batches of one capture metered as ``institution``, pseudonymised
    (its CPU added to ``pseudo_cpu_s[0]`` when given)."""
    meter = FlowMeter("agent", institution_id=institution, sensor_id=f"{institution}-s1")
    out: list[wire.RecordBatch] = []
    packets = 0
    try:
        for chunk in read_capture(path, chunk_packets=65536):
            packets += len(chunk)
            out += [meter.add(chunk), arp_bindings(chunk, institution, f"{institution}-s1")]
        out.append(meter.flush())
    except Exception as exc:  # noqa: BLE001 - a capture the reader refuses is skipped, counted by the caller
        print(f"bench agent: {path}: {exc}", file=sys.stderr)
    batches = []
    t0 = time.process_time()
    for batch in out:
        if batch is None or not len(batch):
            continue
        if batch.type is wire.ARP:
            cols = {**pseudo.apply_columns(batch.columns, ("ip",)), "mac": pseudo.apply_macs(batch.columns["mac"])}
        else:
            cols = pseudo.apply_columns(batch.columns)
        batches.append(wire.RecordBatch(batch.type, cols, batch.batch_id))
    if pseudo_cpu_s is not None:
        pseudo_cpu_s[0] += time.process_time() - t0
    return batches, packets


def stamp(batch: wire.RecordBatch, now_ms: int) -> wire.RecordBatch:
    """``batch`` with every record ending at ``now_ms`` (durations kept)."""
    cols = dict(batch.columns)
    duration = np.maximum(cols["last_seen_ms"] - cols["first_seen_ms"], 0)
    cols["last_seen_ms"] = np.full(len(batch), now_ms, dtype=np.int64)
    cols["first_seen_ms"] = now_ms - duration
    return wire.RecordBatch(batch.type, cols, batch.batch_id)


class Feeder:
    """Metered batches of the captures, round after round, split into messages of ``rows``."""

    def __init__(self, captures: list[str], institutions: list[str], pseudo_keys: dict[str, bytes], rows: int) -> None:
        self.captures, self.institutions, self.rows = captures, institutions, rows
        self.pseudo = {inst: Pseudonymiser(pseudo_keys[inst], INTERNAL_NETWORKS) for inst in institutions}
        self.flows: list[wire.RecordBatch] = []
        self.arp: list[wire.RecordBatch] = []
        self.waiting = 0
        self.step = 0
        self.packets = 0
        self.meter_cpu_s = 0.0

    def refill(self) -> None:
        dry = 0  # captures in a row that gave no flow: a whole round of them is an error
        while self.waiting < self.rows:
            if dry > len(self.captures):
                raise RuntimeError("no capture gave a flow")
            capture = self.captures[self.step % len(self.captures)]
            inst = self.institutions[(self.step // len(self.captures)) % len(self.institutions)]
            self.step += 1
            t0, pseudo_s = time.process_time(), [0.0]
            batches, packets = meter_capture(capture, inst, self.pseudo[inst], pseudo_s)
            self.meter_cpu_s += time.process_time() - t0 - pseudo_s[0]  # pseudonymising is not metering
            self.packets += packets
            dry += 1
            for batch in batches:
                if batch.type is wire.FLOW:
                    self.flows.append(batch)
                    self.waiting += len(batch)
                    dry = 0
                else:
                    self.arp.append(batch)

    def take(self, coalesce: bool = False) -> tuple[wire.RecordBatch, list[wire.RecordBatch]]:
        """At most ``rows`` flows of one institution, and the ARP bindings metered so far: the
        flows of one capture's batch, or (``coalesce``) of as many batches in a row of the same
        institution as fit, as an agent that holds its meter's small batches back would send."""
        self.refill()
        parts = [self._head(self.rows)]
        while coalesce and self.flows and sum(map(len, parts)) < self.rows and _inst(self.flows[0]) == _inst(parts[0]):
            parts.append(self._head(self.rows - sum(map(len, parts))))
        part = parts[0] if len(parts) == 1 else wire.RecordBatch.concat(parts)
        arp, self.arp = self.arp, []
        return part, arp

    def _head(self, rows: int) -> wire.RecordBatch:
        head = self.flows[0]
        part = head if len(head) <= rows else head.take(slice(0, rows))
        if len(head) <= rows:
            self.flows.pop(0)
        else:
            self.flows[0] = head.take(slice(rows, len(head)))
        self.waiting -= len(part)
        return part


def _inst(batch: wire.RecordBatch) -> str:
    return str(batch.columns["institution_id"][0])


def run(bootstrap: str, rate: float, seconds: float, captures: list[str], institutions: list[str],
        sign_keys: dict[str, str], pseudo_keys: dict[str, str], batch_rows: int = 5000, coalesce: bool = False,
        compress: bool = True, wait_for_go: bool = False) -> dict:
    feeder = Feeder(captures, institutions, {k: bytes.fromhex(v) for k, v in pseudo_keys.items()}, batch_rows)
    publisher = BatchPublisher(bootstrap, client_id="bench-agent", max_rows=batch_rows,
                               signing_keys={k: bytes.fromhex(v) for k, v in sign_keys.items()},
                               compress=compress).start()
    if wait_for_go:  # several agents: each says it is ready, then all start when told (a line on stdin)
        print("ready", flush=True)
        sys.stdin.readline()
    sent = arp_sent = messages = 0
    cpu0, t0, start_unix_s = time.process_time(), time.monotonic(), time.time()
    while time.monotonic() - t0 < seconds:
        due = t0 + sent / rate
        if time.monotonic() < due:
            publisher.poll(max(min(due - time.monotonic(), 0.05), 0.0))  # a negative timeout blocks forever
            continue
        flows, arp = feeder.take(coalesce)
        now_ms = int(time.time() * 1000)
        messages += publisher.publish(stamp(flows, now_ms))
        for batch in arp:
            publisher.publish(stamp(batch, now_ms))
            arp_sent += len(batch)
        sent += len(flows)
    left = publisher.stop(60)
    return {"sent": sent, "arp_sent": arp_sent, "flow_messages": messages, "packets": feeder.packets, "unacknowledged": left,
            "cpu_s": time.process_time() - cpu0, "meter_cpu_s": feeder.meter_cpu_s, "send_s": time.monotonic() - t0,
            "start_unix_s": start_unix_s}


if __name__ == "__main__":  # arguments as one JSON line on stdin (keys stay off the command line)
    print(json.dumps(run(**json.loads(sys.stdin.readline()))), flush=True)
