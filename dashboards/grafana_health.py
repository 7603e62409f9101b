"""Pipeline-health panels from Prometheus: throughput, drops, dead letters and errors.

finsa's processes expose ``finsa.metrics.REGISTRY`` on ``/metrics`` (the web view, the worker);
a Prometheus data source (uid ``finsa-prometheus``) that scrapes them feeds these panels. Lag and
sensor heartbeats come from ClickHouse instead (panels ``ingest_lag`` and ``sensors``): they are
facts about stored rows, which Prometheus does not see. There is no ``pipeline_metrics`` table:
counters belong in Prometheus, not in the analytical store.

Each entry of :data:`PROMETHEUS_PANELS` names metrics that exist in the code base (a test
checks every ``finsa_*`` name against the registry's declarations).

>>> [p.title for p in PROMETHEUS_PANELS][:2]
['Worker throughput', 'Dead letters']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.models import dashboard

__all__ = ["PromPanel", "PROMETHEUS_PANELS", "prometheus_panels", "metric_names"]


@dataclass(frozen=True)
class PromPanel:
    """A time series panel of PromQL queries: (legend, expression) pairs."""

    title: str
    description: str
    unit: str
    queries: tuple[tuple[str, str], ...]


PROMETHEUS_PANELS: tuple[PromPanel, ...] = (
    PromPanel("Worker throughput", "Flows and alerts the stream workers process per second.", "ops", (
        ("flows/s", "sum(rate(finsa_worker_flows_total[5m]))"),
        ("alerts/s", "sum(rate(finsa_worker_alerts_total[5m]))"))),
    PromPanel("Dead letters", "Messages sent to the dead-letter topic per second, by reason.", "ops", (
        ("{{reason}}", "sum by (reason) (rate(finsa_worker_dead_letters_total[5m]))"),)),
    PromPanel("Capture drops", "Packets the kernel and the agents' spools dropped per second.", "pps", (
        ("kernel", "sum(rate(finsa_capture_kernel_drops_total[5m]))"),
        ("spool", "sum(rate(finsa_spool_dropped_total[5m]))"))),
    PromPanel("Agent spool depth", "Batches waiting in the agents' on-disk spools.", "short", (
        ("batches", "sum(finsa_spool_depth_batches)"),)),
    PromPanel("Errors", "Storage, detector and send errors per second.", "ops", (
        ("storage", "sum(rate(finsa_storage_errors_total[5m]))"),
        ("detector", "sum(rate(finsa_detector_errors_total[5m]))"),
        ("agent send", "sum(rate(finsa_agent_send_errors_total[5m]))"),
        ("storage retries", "sum(rate(finsa_worker_storage_retries_total[5m]))"))),
)

_METRIC = re.compile(r"\bfinsa_[a-z0-9_]+")


def metric_names() -> set[str]:
    """Every ``finsa_*`` metric the panels query."""
    return {m for p in PROMETHEUS_PANELS for _, expr in p.queries for m in _METRIC.findall(expr)}


def prometheus_panels(datasource_uid: str) -> list[Any]:
    """SDK time series panel builders for :data:`PROMETHEUS_PANELS`."""
    out = []
    ref = dashboard.DataSourceRef(type_val="prometheus", uid=datasource_uid)
    for panel in PROMETHEUS_PANELS:
        builder = (timeseries.Panel().title(panel.title).description(panel.description)
                   .datasource(ref).unit(panel.unit).height(8).span(12))
        for number, (legend, expr) in enumerate(panel.queries):
            builder.with_target(prometheus.Dataquery().expr(expr).legend_format(legend)
                                .ref_id(chr(ord("A") + number)).range())
        out.append(builder)
    return out
