"""Detection benchmark: DetectionEngine over 10k-row flow batches, next to river used per flow.

The flows are the cached mixed capture metered by finsa (each client /24 mapped to one of
eight institutions, batches in time order). finsa's rate is flows per CPU second of
``DetectionEngine().process`` over every batch (every default detector, state kept across
batches). The references score and learn each flow with river on a small feature dict
(log bytes and packets per direction, duration, destination port): Half-Space Trees alone and
a StandardScaler | HalfSpaceTrees pipeline, on a prefix of the flows.
"""

from __future__ import annotations

import math
import time

import numpy as np

from bench.flows import INSTITUTIONS
from bench.report import Result, table
from bench.synth import mixed_capture
from finsa.wire import RecordBatch

__all__ = ["run", "metered_flows"]


def metered_flows(packets: int) -> RecordBatch:
    """Flows of the cached mixed capture, with institutions, sorted by first_seen_ms."""
    from finsa.collectors.meter.flowmeter import meter_capture

    flows = RecordBatch.concat(list(meter_capture(mixed_capture(packets), profile="nfstream", sensor_id="tap1")))
    client = flows.columns["src_ip"][:, 14].astype(np.int64)  # 10.0.X.*: X picks the institution
    flows.columns["institution_id"] = INSTITUTIONS[client % len(INSTITUTIONS)]
    order = np.argsort(flows.columns["first_seen_ms"], kind="stable")
    return flows.take(order)


def _features(flows: RecordBatch, n: int) -> list[dict[str, float]]:
    c = flows.columns
    names = ("src2dst_bytes", "dst2src_bytes", "src2dst_packets", "dst2src_packets")
    cols = [c[k][:n].tolist() for k in names]
    dur = (c["last_seen_ms"][:n] - c["first_seen_ms"][:n]).tolist()
    port = c["dst_port"][:n].tolist()
    return [{"b_out": math.log1p(a), "b_in": math.log1p(b), "p_out": math.log1p(p), "p_in": math.log1p(q),
             "dur": math.log1p(d), "port": pt / 65535} for a, b, p, q, d, pt in zip(*cols, dur, port)]


def _river(model, xs: list[dict[str, float]]) -> float:
    t0 = time.process_time()
    for x in xs:
        model.score_one(x)
        model.learn_one(x)
    return time.process_time() - t0


def run(quick: bool, packets: int | None = None, batch_rows: int = 10_000) -> list[str]:
    from river import anomaly, compose, preprocessing

    from finsa.detectors.engine import DetectionEngine

    flows = metered_flows(packets or (200_000 if quick else 2_000_000))
    engine = DetectionEngine()
    alerts = 0
    t0 = time.process_time()
    for lo in range(0, len(flows), batch_rows):
        alerts += len(engine.process(flows.take(np.arange(lo, min(lo + batch_rows, len(flows))))))
    finsa_s = time.process_time() - t0
    rows = [Result("finsa", len(flows), finsa_s, "cpu",
                   f"DetectionEngine().process, {batch_rows:,}-row batches, {len(engine.detectors)} detectors, {alerts} alerts")]
    n_ref = min(len(flows), 5_000 if quick else 50_000)
    xs = _features(flows, n_ref)
    hst = anomaly.HalfSpaceTrees(seed=1)
    rows.append(Result("river HST", n_ref, _river(hst, xs), "cpu", f"score_one+learn_one per flow, first {n_ref:,} flows"))
    pipe = compose.Pipeline(preprocessing.StandardScaler(), anomaly.HalfSpaceTrees(seed=1))
    rows.append(Result("river Scaler|HST", n_ref, _river(pipe, xs), "cpu", "same flows, StandardScaler | HalfSpaceTrees"))
    return [table(f"detection: flows per CPU second ({len(flows):,} metered flows)", "flow", rows)]
