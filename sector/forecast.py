"""Online forecasts of alert volume per series (subsector, technique) and threshold crossings.

Alerts are counted per series and per minute of alert time (``step_ms``). When a minute closes
(:meth:`VolumeForecaster.advance`), each series learns its count, minutes without alerts count as
zero, and a Holt linear-trend model (double exponential smoothing) forecasts the next
``horizon_steps`` minutes. The model starts with the first value as level and a zero trend:
``river.time_series.HoltWinters`` starts its trend from the first two values, which made a
noisy flat series look like a steep rise and warn falsely, so :class:`Holt` is finsa's own
(eight lines, picklable, deterministic). A :class:`Crossing` is reported when the series is
still below its threshold but the forecast reaches it within the horizon: that is the early
warning (once the threshold is passed, the alerts speak for themselves). A series reports again
only after ``cooldown_ms``.

The threshold of a series is the larger of an absolute floor (per series prefix, e.g.
``{"subsector": 30, "technique": 40}``, else ``default_threshold``) and ``relative`` times the
series' slow baseline (an EWMA), so a busy series is judged against its own normal.

>>> f = VolumeForecaster(default_threshold=20, horizon_steps=15, min_history=4)
>>> out = []
>>> for minute in range(10):
...     f.add("subsector:payment", minute * 60_000, count=2 * minute + 1)
...     out += f.advance((minute + 1) * 60_000)
>>> [(c.key, c.last_value < c.threshold <= max(c.forecast)) for c in out][:1]
[('subsector:payment', True)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from finsa.metrics import REGISTRY

__all__ = ["Crossing", "Holt", "VolumeForecaster"]

LATE = REGISTRY.counter("finsa_forecast_late_total", "Alert counts that came after their minute was closed")


@dataclass(frozen=True)
class Crossing:
    """A series forecast to cross its threshold within the horizon."""

    key: str
    time_ms: int  # end of the last closed minute
    last_value: float
    forecast: tuple[float, ...]
    threshold: float
    steps_to_cross: int  # 1 = the next minute


class Holt:
    """Holt's linear trend: level and trend smoothed with ``alpha`` and ``beta``.

    >>> h = Holt(0.5, 0.3)
    >>> for y in (1, 2, 3, 4, 5, 6): h.learn_one(y)
    >>> [round(v, 1) for v in h.forecast(2)]
    [6.4, 7.3]
    """

    __slots__ = ("alpha", "beta", "level", "trend")

    def __init__(self, alpha: float, beta: float) -> None:
        self.alpha, self.beta = alpha, beta
        self.level: float | None = None
        self.trend = 0.0

    def learn_one(self, y: float) -> None:
        if self.level is None:
            self.level = float(y)
            return
        level = self.alpha * y + (1 - self.alpha) * (self.level + self.trend)
        self.trend = self.beta * (level - self.level) + (1 - self.beta) * self.trend
        self.level = level

    def forecast(self, horizon: int) -> list[float]:
        return [(self.level or 0.0) + h * self.trend for h in range(1, horizon + 1)]

    def __getstate__(self) -> tuple:
        return self.alpha, self.beta, self.level, self.trend

    def __setstate__(self, state: tuple) -> None:
        self.alpha, self.beta, self.level, self.trend = state


class _Series:
    __slots__ = ("model", "baseline", "history", "pending", "last_warn_ms", "last")

    def __init__(self, alpha: float, beta: float) -> None:
        self.model = Holt(alpha, beta)
        self.baseline: float | None = None
        self.history = 0
        self.pending: dict[int, float] = {}
        self.last_warn_ms = -(1 << 62)
        self.last = 0.0


class VolumeForecaster:
    """Keyed per-minute counts with a trend forecast each; see the module docstring."""

    def __init__(self, step_ms: int = 60_000, horizon_steps: int = 15, default_threshold: float = 20.0,
                 thresholds: Mapping[str, float] | None = None, relative: float = 3.0,
                 alpha: float = 0.3, beta: float = 0.2, baseline_alpha: float = 0.05,
                 min_history: int = 5, cooldown_ms: int = 30 * 60_000, max_series: int = 10_000,
                 max_fill_steps: int = 120) -> None:
        if step_ms <= 0 or horizon_steps < 1 or not 0 < alpha <= 1 or not 0 <= beta <= 1:
            raise ValueError("bad forecast settings")
        self.step_ms, self.horizon_steps = step_ms, horizon_steps
        self.default_threshold, self.thresholds = default_threshold, dict(thresholds or {})
        self.relative, self.alpha, self.beta, self.baseline_alpha = relative, alpha, beta, baseline_alpha
        self.min_history, self.cooldown_ms = min_history, cooldown_ms
        self.max_series, self.max_fill_steps = max_series, max_fill_steps
        self.series: dict[str, _Series] = {}
        self.closed_step: int | None = None  # last closed minute index

    def add(self, key: str, time_ms: int, count: float = 1.0) -> None:
        step = int(time_ms) // self.step_ms
        if self.closed_step is not None and step <= self.closed_step:
            LATE.inc(count)
            return
        s = self.series.get(key)
        if s is None:
            if len(self.series) >= self.max_series:
                return
            s = self.series[key] = _Series(self.alpha, self.beta)
        s.pending[step] = s.pending.get(step, 0.0) + count

    def threshold(self, key: str, s: _Series) -> float:
        floor = self.thresholds.get(key.split(":", 1)[0], self.default_threshold)
        return max(floor, self.relative * (s.baseline or 0.0))

    def advance(self, now_ms: int) -> list[Crossing]:
        """Close every minute that ended by ``now_ms``; return the new crossings."""
        last = int(now_ms) // self.step_ms - 1
        if self.closed_step is None:
            firsts = [min(s.pending) for s in self.series.values() if s.pending]
            if not firsts:
                return []
            self.closed_step = min(firsts) - 1
        if last <= self.closed_step:
            return []
        first = max(self.closed_step + 1, last - self.max_fill_steps + 1)
        out: list[Crossing] = []
        for key in sorted(self.series):
            s = self.series[key]
            for step in range(first, last + 1):
                self._learn(s, s.pending.pop(step, 0.0))
            s.pending = {k: v for k, v in s.pending.items() if k > last}
            crossing = self._check(key, s, (last + 1) * self.step_ms)
            if crossing is not None:
                out.append(crossing)
        self.closed_step = last
        return out

    def _learn(self, s: _Series, value: float) -> None:
        s.model.learn_one(value)
        s.history += 1
        s.last = value
        s.baseline = value if s.baseline is None else s.baseline + self.baseline_alpha * (value - s.baseline)

    def _check(self, key: str, s: _Series, time_ms: int) -> Crossing | None:
        last_value = s.last
        if s.history < self.min_history or time_ms - s.last_warn_ms < self.cooldown_ms:
            return None
        limit = self.threshold(key, s)
        if last_value >= limit:
            return None
        forecast = tuple(max(0.0, float(v)) for v in s.model.forecast(horizon=self.horizon_steps))
        step = next((i + 1 for i, v in enumerate(forecast) if v >= limit), None)
        if step is None:
            return None
        s.last_warn_ms = time_ms
        return Crossing(key, time_ms, last_value, forecast, limit, step)
