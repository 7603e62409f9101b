"""What each default detector costs the stream worker, on the pipeline's own flows.

``python -m bench.detector_cost [--rounds N] [--group-rows N] [--alerts FILE]``

The flows are those ``python -m bench pipeline`` sends: every capture of ``../shared/data/flows``
and ``attacks`` metered by the agent meter (:func:`bench.pipeline_agent.meter_capture`) round
after round as each of the eight bench institutions, pseudonymised (fixed keys, so runs repeat),
ARP bindings included. They are stamped as a stream at 25,000 flows per second of flow time, cut
into 5,000-row signed messages, and grouped as a worker groups them (``--group-rows``, 20,000:
about what the worker takes per group at that rate). The groups of the first round of
each institution (``--warmup``) are processed untimed: the anomaly detector's river models are
built on an institution's first flows (a one-off cost the pipeline pays once per process) and the
windows fill; ``--rounds`` (16) rounds in all. Then, in this one process:

- **decode+verify**: :meth:`FlowProcessor.prepare_group`'s part before detection (signature
  check, :func:`finsa.wire.decode_batch`, the rows' institution check, the group's concat);
- **detect**: the pipeline's engine (every default detector, the institutions' subsectors) on each
  group, each detector instance's ``process`` timed on its own, and the engine's own work (row
  validation, time slices, frame, alert batch) as the rest.

Prints CPU seconds per 100k flows for each, ranked. ``--alerts FILE`` writes every alert
(time, detector, institution, entity, alert id, severity, score) as JSON lines: two runs of
different code on the same flows must give the same file.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.pipeline import INSTITUTIONS, _registry, captures
from bench.pipeline_agent import INTERNAL_NETWORKS, meter_capture

RATE_PER_S = 25_000
MESSAGE_ROWS = 5_000


def workload(rounds: int, group_rows: int) -> tuple[list[list[tuple[bytes, list]]], int]:
    """Groups of signed messages (payload, headers): flows and ARP bindings as the agent sends them,
    and how many groups hold the first round of each institution (the warm-up)."""
    from finsa import wire
    from finsa.batchauth import sign_headers
    from finsa.collectors.agent.pseudonym import Pseudonymiser

    rng = np.random.default_rng(7)
    pseudo = {i: Pseudonymiser(rng.bytes(32), INTERNAL_NETWORKS) for i, _ in INSTITUTIONS}
    messages: list[tuple[wire.RecordBatch, str, int]] = []
    for r in range(rounds):
        inst = INSTITUTIONS[r % len(INSTITUTIONS)][0]
        for path in captures(False):
            batches, _ = meter_capture(path, inst, pseudo[inst])
            for b in batches:
                for lo in range(0, len(b), MESSAGE_ROWS):
                    messages.append((b.take(np.arange(lo, min(lo + MESSAGE_ROWS, len(b)))) if len(b) > MESSAGE_ROWS
                                     else b, inst, r))
    groups: list[list[tuple[bytes, list]]] = [[]]
    sent, flows, start_ms, warm = 0, 0, 1_800_000_000_000, 0
    for batch, inst, r in messages:
        if r < len(INSTITUTIONS):
            warm = len(groups)
        now_ms = start_ms + sent * 1000 // RATE_PER_S
        cols = dict(batch.columns)
        duration = np.maximum(cols["last_seen_ms"] - cols["first_seen_ms"], 0)
        cols["last_seen_ms"] = np.full(len(batch), now_ms, dtype=np.int64)
        cols["first_seen_ms"] = now_ms - duration
        payload = wire.encode_batch(wire.RecordBatch(batch.type, cols, secrets.token_bytes(16)))
        if batch.type is wire.FLOW:
            sent += len(batch)
            if sum(1 for _ in groups[-1]) and flows >= group_rows:
                groups.append([])
                flows = 0
            flows += len(batch)
        groups[-1].append((payload, sign_headers(payload, inst, _KEYS[inst])))
    return groups, warm + 1


def _flows(group: list[tuple[bytes, list]]) -> int:
    from finsa import wire

    return sum(len(b) for b in (wire.decode_batch(p) for p, _ in group) if b.type is wire.FLOW)


_KEYS = {inst: bytes([i + 1]) * 32 for i, (inst, _) in enumerate(INSTITUTIONS)}


class Timed:
    """A detector whose ``process`` adds its CPU seconds to ``cost[name]``."""

    def __init__(self, inner, cost: dict[str, float]) -> None:
        self.inner, self.cost, self.name, self.record = inner, cost, inner.name, inner.record

    def process(self, flows):
        t0 = time.process_time()
        try:
            return self.inner.process(flows)
        finally:
            self.cost[self.name] = self.cost.get(self.name, 0.0) + time.process_time() - t0


def _wrap(engine, cost: dict[str, float]) -> None:
    for slot in engine._state.slots:
        if slot.default is not None:
            slot.default = Timed(slot.default, cost)
        slot.special = {k: (Timed(d, cost) if d is not None else None) for k, d in slot.special.items()}


def run(rounds: int, group_rows: int, alerts_path: str | None, repeat: int, warmup: int | None = None) -> str:
    from finsa.app.offline import make_engine
    from finsa.batchauth import BatchVerifier
    from finsa import wire
    from finsa.streams.processor import FlowProcessor

    groups, first_rounds = workload(rounds, group_rows)
    warmup = first_rounds if warmup is None else warmup
    flows = sum(_flows(g) for g in groups[warmup:])
    lines = [f"{flows:,} flows timed in {len(groups) - warmup} groups after {warmup} warm-up groups "
             f"({rounds} rounds of {len(captures(False))} captures)"]
    best: dict[str, float] = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(None, _registry(Path(tmp) / "institutions.toml"))
        cost: dict[str, float] = {}
        _wrap(engine, cost)
        processor = FlowProcessor(store=None, engine=engine, verifier=BatchVerifier(_KEYS))  # type: ignore[arg-type]  # never stores
        decode_s = detect_s = 0.0
        out = []
        for n, group in enumerate(groups):
            if n == warmup:  # models built, windows filled: time the steady state from here
                cost.clear()
                decode_s = detect_s = 0.0
            payloads, headers = [p for p, _ in group], [h for _, h in group]
            t0 = time.process_time()
            good = [processor._accept(p, h) for p, h in zip(payloads, headers)]
            flow_b = [b for b in good if b.type.name == "flow"]
            arp_b = [b for b in good if b.type.name == "arp"]
            joined = [wire.RecordBatch.concat(bs) if len(bs) > 1 else bs[0] for bs in (arp_b, flow_b) if bs]
            t1 = time.process_time()
            for batch in joined:
                out.append(engine.process(batch))
            t2 = time.process_time()
            decode_s += t1 - t0
            detect_s += t2 - t1
        cost["(decode+verify)"] = decode_s
        cost["(engine rest)"] = detect_s - sum(v for k, v in cost.items() if not k.startswith("("))
        cost["(detect total)"] = detect_s
        for k, v in cost.items():
            best[k] = min(best.get(k, v), v)
    per = 100_000 / flows
    total = best["(detect total)"] + best["(decode+verify)"]
    lines.append(f"{'stage':<20} {'CPU s per 100k flows':>22} {'share':>7}")
    for name, v in sorted(best.items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:<20} {v * per:>22.4f} {v / total:>7.1%}")
    if alerts_path:
        with open(alerts_path, "w") as fh:
            for batch in out:
                c = batch.columns
                for i in range(len(batch)):
                    fh.write(json.dumps({k: (c[k][i].item() if hasattr(c[k][i], "item") else str(c[k][i]))
                                         for k in ("time_ms", "detector", "institution_id", "entity", "alert_id",
                                                   "severity", "score", "confidence", "target", "evidence")}) + "\n")
        lines.append(f"{sum(len(b) for b in out)} alerts written to {alerts_path}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.detector_cost")
    ap.add_argument("--rounds", type=int, default=16, help="rounds over the captures (one institution each)")
    ap.add_argument("--group-rows", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs over the same groups; the best (least CPU) kept")
    ap.add_argument("--warmup", type=int, help="groups processed before the timing starts "
                    "(default: those of the first round of every institution)")
    ap.add_argument("--alerts", help="write every alert as JSON lines to this file")
    args = ap.parse_args(argv)
    print(run(args.rounds, args.group_rows, args.alerts, args.repeat, args.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
