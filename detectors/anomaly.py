"""Online anomaly detection on per-source behaviour with river's Half-Space Trees.

Every batch, each active source host gets one feature vector (flows, distinct destinations and
ports, failed and SYN-only ratios shrunk towards 0 for sources with few flows, bytes and packets per flow, and Kitsune-style damped flow
rates at 1 s and 60 s), log-scaled into fixed ranges (min-max by hand, so no scaler drifts).
Each institution has its own ``river.anomaly.HalfSpaceTrees`` and its own threshold: a
``river.stats.RollingQuantile(q)`` of its last ``quantile_window`` learned scores (exact; the P²
estimate of ``stats.Quantile`` lagged far below the true 99th percentile on these scores). A vector alerts when, after ``warmup`` learned
vectors, its score exceeds ``quantile + margin * (1 - quantile)``; a flagged vector is not learned
(nor are its scores fed to the quantile). Scoring is per source per batch, not per flow, with at
most ``max_learned`` sources learned (a seeded random sample, scored first) and ``max_scored``
more scored per batch: the most extreme ones (largest sum of scaled features), to bound the cost
of a batch (river's trees score in pure Python, ~20 us a vector).

entity = the source (entity_kind ``src_ip``), target = its only destination or ``many``;
technique ``anomaly`` (no single ATT&CK technique); severity from the score margin (2..4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from river import anomaly, stats

from finsa.detectors.base import Detector, WindowDeduper, make_alert
from finsa.detectors.features import DampedStats, FlowFrame, source_features
from finsa.wire import RecordBatch, ips_to_strings

__all__ = ["AnomalyDetector", "FEATURES"]

#: Feature name -> upper end of its range after log1p (ratios are not logged).
FEATURES = {
    "flows": np.log1p(1e5), "distinct_dsts": np.log1p(65536.0), "distinct_ports": np.log1p(65536.0),
    "failed_ratio": 1.0, "syn_only_ratio": 1.0, "bytes_per_flow": np.log1p(1e9),
    "packets_per_flow": np.log1p(1e6), "rate_1s": np.log1p(1e5), "rate_60s": np.log1p(1e6),
}
_RATIOS = ("failed_ratio", "syn_only_ratio")
#: Ratios are shrunk towards 0 as if this many more good flows had been seen: one failed flow
#: out of one is not evidence, 200 out of 200 is.
_PRIOR_FLOWS = 4.0


class _InstitutionModel:
    """Per-institution scorer and threshold."""

    def __init__(self, n_trees: int, height: int, window_size: int, q: float, quantile_window: int,
                 seed: int) -> None:
        self.hst = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size,
                                          limits={f: (0.0, float(hi)) for f, hi in FEATURES.items()},
                                          seed=seed)
        self.quantile = stats.RollingQuantile(q, window_size=quantile_window)
        self.learned = 0


class AnomalyDetector(Detector):
    """Half-Space Trees over per-source batch features, thresholded per institution."""

    name = "anomaly"
    technique = "anomaly"

    def __init__(self, *, n_trees: int = 10, height: int = 8, tree_window: int = 250, q: float = 0.99,
                 quantile_window: int = 2000, margin: float = 0.6, warmup: int = 1000, min_flows: int = 3,
                 max_scored: int = 200, max_learned: int = 100, window_ms: int = 60_000,
                 seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.n_trees, self.height, self.tree_window, self.q = n_trees, height, tree_window, q
        self.quantile_window = quantile_window
        self.margin, self.warmup, self.min_flows = margin, warmup, min_flows
        self.max_scored, self.max_learned = max_scored, max_learned
        self._check(n_trees=(n_trees, 1, 100), height=(height, 1, 20), tree_window=(tree_window, 10, 1e6),
                    q=(q, 0.5, 0.99999), quantile_window=(quantile_window, 10, 1e6), margin=(margin, 0.0, 0.99), warmup=(warmup, 0, 1e9),
                    min_flows=(min_flows, 1, 1e9), max_scored=(max_scored, 1, 1e7),
                    max_learned=(max_learned, 0, 1e7))
        self._models: dict[str, _InstitutionModel] | None = None
        self._damped: DampedStats | None = None
        self._rng: np.random.Generator | None = None
        self._dedupe: WindowDeduper | None = None

    def _vectors(self, frame: FlowFrame) -> tuple[Any, dict[str, np.ndarray], np.ndarray]:
        g, f = source_features(frame)
        flows = f["flows"].astype(np.float64)
        t = g.max(frame.end_ms)
        bytes_sq = g.sum(frame.bytes * frame.bytes)
        damped = self._damped.update(g.keys, t, flows, f["bytes"], bytes_sq)
        raw = {"flows": flows, "distinct_dsts": f["distinct_dsts"], "distinct_ports": f["distinct_ports"],
               "failed_ratio": f["failed"] / (flows + _PRIOR_FLOWS),
               "syn_only_ratio": f["syn_only"] / (flows + _PRIOR_FLOWS),
               "bytes_per_flow": f["bytes"] / flows, "packets_per_flow": f["packets"] / flows,
               "rate_1s": damped[:, 0], "rate_60s": damped[:, -3]}
        matrix = np.column_stack([np.clip(raw[k] if k in _RATIOS else np.log1p(raw[k]), 0.0, hi)
                                  for k, hi in FEATURES.items()])
        return g, raw, matrix

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        if self._models is None:
            self._models, self._damped = {}, DampedStats()
            self._rng, self._dedupe = np.random.default_rng(self.seed), WindowDeduper(self.window_ms)
        g, raw, matrix = self._vectors(frame)
        learn, score_only = self._choose(g, raw, matrix)
        order = np.concatenate([learn, score_only])
        names = list(FEATURES)
        out, budget = [], len(learn)
        inst_of = frame.inst_code[g.first]
        for gi, row in zip(order.tolist(), matrix[order].tolist()):
            inst = frame.inst_names[inst_of[gi]]
            model = self._models.get(inst)
            if model is None:
                model = self._models[inst] = _InstitutionModel(
                    self.n_trees, self.height, self.tree_window, self.q, self.quantile_window,
                    self.seed + len(self._models))
            x = dict(zip(names, row))
            score = model.hst.score_one(x)
            threshold = self._threshold(model)
            if model.learned >= self.warmup and score > threshold:
                alert = self._alert(frame, g, gi, raw, score, model)
                if alert is not None:
                    out.append(alert)
            elif budget > 0:
                budget -= 1
                model.hst.learn_one(x)
                if model.learned >= self.tree_window:
                    model.quantile.update(score)
                model.learned += 1
        return out

    def learn_verdict(self, alert: dict[str, Any], verdict: str) -> bool:
        """An analyst's verdict on one of this detector's alerts: a false positive (or a benign true
        positive) is normal behaviour, so its vector -- not learned when it was flagged -- is learned
        now by its institution's model. Returns True when it was learned."""
        model = (self._models or {}).get(str(alert.get("institution_id", "")))
        features = alert.get("evidence", {}).get("features", {}) if isinstance(alert.get("evidence"), dict) else {}
        if verdict not in ("false_positive", "benign_true_positive") or model is None:
            return False
        try:
            x = {k: float(np.clip(float(features[k]) if k in _RATIOS else np.log1p(float(features[k])), 0.0, hi))
                 for k, hi in FEATURES.items()}
        except (KeyError, TypeError, ValueError):
            return False
        model.hst.learn_one(x)
        model.learned += 1
        return True

    def _choose(self, g: Any, raw: dict[str, np.ndarray], matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sources to learn from (a seeded random sample) and the others to score: the most extreme."""
        eligible = np.flatnonzero(raw["flows"] >= self.min_flows)
        picked = self._rng.permutation(eligible)
        learn, rest = picked[:self.max_learned], picked[self.max_learned:]
        if len(rest) > self.max_scored:
            extremity = (matrix[rest] / np.array(list(FEATURES.values()))).sum(axis=1)
            rest = rest[np.lexsort((g.keys[rest], -extremity))[:self.max_scored]]
        return learn, rest

    def _threshold(self, model: _InstitutionModel) -> float:
        q = model.quantile.get()
        q = 0.0 if q is None else float(q)
        return q + self.margin * (1.0 - q)

    def _alert(self, frame: FlowFrame, g: Any, gi: int, raw: dict[str, np.ndarray], score: float,
               model: _InstitutionModel) -> dict[str, Any] | None:
        cols, first = frame.cols, int(g.first[gi])
        inst = str(cols["institution_id"][first])
        entity, dst = ips_to_strings(np.concatenate([cols["src_ip"][first:first + 1],
                                                     cols["dst_ip"][first:first + 1]]))
        mine = g.rows_of(gi, 10)
        time_ms = int(frame.end_ms[g.inverse == gi].max())
        if not self._dedupe.first(inst, entity, time_ms):
            return None
        q = float(model.quantile.get() or 0.0)
        relative = (score - q) / max(1.0 - q, 1e-9)
        feats = {k: float(v[gi]) for k, v in raw.items()}
        feats.update(score=score, quantile=q, threshold=self._threshold(model))
        return make_alert(
            detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
            entity_kind="src_ip", target=dst if raw["distinct_dsts"][gi] == 1 else "many",
            time_ms=time_ms, first_seen_ms=int(frame.t_ms[g.inverse == gi].min()),
            window_ms=self.window_ms, severity=2 + int(relative >= 0.75) + int(relative >= 0.9),
            score=score, confidence=min(1.0, relative), features=feats,
            flow_ids=cols["flow_id"][mine])
