"""Counters and gauges, exported in the Prometheus text format.

"Everything that moves gets a counter." A metric is created once, at module level, and
updated on hot paths with a plain integer add; rendering happens only when scraped.

>>> reg = Registry()
>>> c = reg.counter("finsa_demo_packets_total", "Packets seen", ["reason"])
>>> c.inc(3, reason="ok"); c.inc(reason="bad")
>>> c.value(reason="ok")
3.0
>>> print(reg.render().splitlines()[3])
finsa_demo_packets_total{reason="ok"} 3.0
"""

from __future__ import annotations

import threading
from typing import Iterable


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_: str, labels: Iterable[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_, tuple(labels)
        self._values: dict[tuple, float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict) -> tuple:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labels)}")
        return tuple(str(labels[k]) for k in self.labels)

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def total(self) -> float:
        return sum(self._values.values())

    def samples(self) -> list[tuple[dict, float]]:
        with self._lock:
            return [(dict(zip(self.labels, k)), v) for k, v in sorted(self._values.items())]

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        samples = self.samples() or ([({}, 0.0)] if not self.labels else [])
        for labels, v in samples:
            label_text = ",".join(f'{k}="{_escape(val)}"' for k, val in labels.items())
            out.append(f"{self.name}{{{label_text}}} {v}" if label_text else f"{self.name} {v}")
        return out


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter(_Metric):
    kind = "counter"

    def inc(self, amount: float = 1, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Registry:
    """A set of metrics with unique names."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> _Metric:
        existing = self._metrics.get(metric.name)
        if existing is not None:
            if type(existing) is not type(metric) or existing.labels != metric.labels:
                raise ValueError(f"metric {metric.name} registered twice with different shapes")
            return existing
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_: str, labels: Iterable[str] = ()) -> Counter:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        return self._add(Counter(name, help_, labels))  # type: ignore[return-value]  # _add returns what it was given

    def gauge(self, name: str, help_: str, labels: Iterable[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_, labels))  # type: ignore[return-value]  # _add returns what it was given

    def get(self, name: str) -> _Metric:
        return self._metrics[name]

    def render(self) -> str:
        return "\n".join(line for m in self._metrics.values() for line in m.render()) + "\n"


#: The process-wide registry every component registers its metrics in.
REGISTRY = Registry()
