"""finsa's Grafana dashboards, built from the same panel list as the web view.

Four dashboards (uid -> what it answers), each a list of panel ids from
:data:`finsa.dashboards.panels.ALL_PANELS`; no panel is written twice:

* ``finsa-sector`` Sector overview: sector level, threat map (geomap of institutions by
  latitude/longitude coloured by level), subsectors, techniques by subsector, campaigns, early
  warnings, level history, top sources, latest alerts.
* ``finsa-institution`` Institution drill-down (variable ``institution``): its level, alerts,
  detectors firing, top talkers, services, sensors.
* ``finsa-campaign`` Campaign view (variable ``entity``, an attack source): who it hit, when,
  with what; the campaigns table once it exists.
* ``finsa-health`` Detector & pipeline health: ingest lag and sensor heartbeats from ClickHouse,
  throughput, drops, dead letters and errors from the Prometheus data source scraping the
  ``/metrics`` endpoints (:mod:`finsa.dashboards.grafana_health`).

Data links carry the clicked value into the next dashboard's variable, with the time range.

>>> boards = build_dashboards()
>>> sorted(boards)
['finsa-campaign', 'finsa-health', 'finsa-institution', 'finsa-sector']
>>> boards["finsa-institution"]["templating"]["list"][0]["name"]
'institution'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard

from finsa.dashboards import grafana_health
from finsa.dashboards.grafana_panels import Link, datasource_ref, grafana_panel
from finsa.dashboards.grafana_sql import ALL_VALUE, to_grafana, variables_used
from finsa.dashboards.panels import ALL_PANELS_BY_ID

__all__ = ["CLICKHOUSE_UID", "PROMETHEUS_UID", "DASHBOARDS", "VARIABLE_QUERIES", "DashboardSpec",
           "build_dashboard", "build_dashboards", "to_plain", "dashboard_url"]

#: uid of the ClickHouse data source the dashboards query (provisioned with that uid).
CLICKHOUSE_UID = "finsa-clickhouse"
#: uid of the Prometheus data source scraping finsa's /metrics endpoints.
PROMETHEUS_UID = "finsa-prometheus"
#: Dashboard variable -> the Grafana query listing its choices (ClickHouse SQL with macros).
VARIABLE_QUERIES = {
    "institution": "SELECT id FROM institutions ORDER BY id",
    "entity": ("SELECT entity FROM alerts FINAL "
               "WHERE time_ms >= toUnixTimestamp64Milli($__fromTime_ms) "
               "AND time_ms <= toUnixTimestamp64Milli($__toTime_ms) AND entity != '' "
               "GROUP BY entity ORDER BY uniqExact(institution_id) DESC, count() DESC, entity LIMIT 200"),
}


@dataclass(frozen=True)
class DashboardSpec:
    """A dashboard: uid, title, its main variables and its panels in order.

    Variables the panels' queries use beyond ``variables`` are added after them.
    """

    uid: str
    title: str
    description: str
    variables: tuple[str, ...]
    panels: tuple[str, ...]
    health: bool = False


DASHBOARDS: tuple[DashboardSpec, ...] = (
    DashboardSpec("finsa-sector", "finsa / Sector overview",
                  "Threat level of the financial sector, its institutions, campaigns and warnings.",
                  (), ("sector_threat", "institution_threat", "subsector_threat", "sources_by_country",
                       "technique_matrix",
                       "active_campaigns", "early_warnings", "level_history", "techniques_over_time",
                       "top_sources", "latest_alerts", "alerts_per_minute", "traffic_per_minute")),
    DashboardSpec("finsa-institution", "finsa / Institution",
                  "One institution: its level, alerts, detectors, talkers, services and sensors.",
                  ("institution",), ("institution_level", "alerts_per_minute", "traffic_per_minute",
                                     "latest_alerts", "detectors_firing", "top_talkers", "services",
                                     "early_warnings", "level_history", "sensors")),
    DashboardSpec("finsa-campaign", "finsa / Campaign",
                  "One attack source across the sector: institutions hit, timeline, techniques.",
                  ("entity",), ("source_summary", "source_timeline", "source_alerts",
                                "active_campaigns", "top_sources")),
    DashboardSpec("finsa-health", "finsa / Detector & pipeline health",
                  "Ingest lag, throughput, drops, dead letters and errors of the pipeline.",
                  (), ("ingest_lag", "sensors", "traffic_per_minute"), health=True),
)

_SLUGS = {spec.uid: spec.uid for spec in DASHBOARDS}


def dashboard_url(uid: str, **variables: str) -> str:
    """Relative URL of a dashboard with variables and the current time range."""
    query = "".join(f"var-{name}={value}&" for name, value in variables.items())
    return f"/d/{uid}/{_SLUGS.get(uid, uid)}?{query}${{__url_time_range}}"


#: panel id -> data links (to the drill-down dashboards, with the clicked row's value).
_LINKS: dict[str, tuple[Link, ...]] = {
    "institution_threat": (Link("Institution ${__data.fields.name}", dashboard_url(
        "finsa-institution", institution="${__data.fields.institution_id}")),),
    "top_sources": (Link("Campaign of ${__data.fields.entity}", dashboard_url(
        "finsa-campaign", entity="${__data.fields.entity}")),),
    "latest_alerts": (Link("Campaign of ${__data.fields.entity}", dashboard_url(
        "finsa-campaign", entity="${__data.fields.entity}")),),
    "source_alerts": (Link("Institution ${__data.fields.institution}", dashboard_url(
        "finsa-institution", institution="${__data.fields.institution_id}")),),
}


def _variable(name: str, datasource_uid: str) -> dash_b.QueryVariable:
    var = (dash_b.QueryVariable(name).label(name.capitalize()).query(VARIABLE_QUERIES[name])
           .datasource(datasource_ref(datasource_uid)).refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
           .sort(dashboard.VariableSort.DISABLED))
    if name == "institution":
        var.include_all(True).all_value(ALL_VALUE).current(
            dashboard.VariableOption(text="All", value="$__all", selected=True))
    return var


def _variables_of(spec: DashboardSpec) -> list[str]:
    """The spec's own variables first, then any other one its panels' queries use."""
    names = list(spec.variables)
    for panel_id in spec.panels:
        for name in sorted(variables_used(to_grafana(ALL_PANELS_BY_ID[panel_id].sql))):
            if name not in names:
                names.append(name)
    return names


def build_dashboard(spec: DashboardSpec, clickhouse_uid: str = CLICKHOUSE_UID,
                    prometheus_uid: str = PROMETHEUS_UID) -> dict[str, Any]:
    """One dashboard as Grafana JSON (a plain dict)."""
    builder = (dash_b.Dashboard(spec.title).uid(spec.uid).description(spec.description)
               .tags(["finsa"]).time("now-6h", "now").refresh("1m").timezone("browser").editable())
    for name in _variables_of(spec):
        builder.with_variable(_variable(name, clickhouse_uid))
    for other in DASHBOARDS:
        if other.uid != spec.uid:
            builder.link(dash_b.DashboardLink(other.title.split(" / ")[-1]).type(
                dashboard.DashboardLinkType.LINK).url(dashboard_url(other.uid)).keep_time(True))
    for panel_id in spec.panels:
        builder.with_panel(grafana_panel(ALL_PANELS_BY_ID[panel_id], clickhouse_uid,
                                         links=_LINKS.get(panel_id, ())))
    if spec.health:
        for panel in grafana_health.prometheus_panels(prometheus_uid):
            builder.with_panel(panel)
    out = to_plain(builder.build())
    _layout(out.get("panels", []))
    return out


def _layout(panels: list[dict[str, Any]]) -> None:
    """Number the panels and flow them left to right on the 24-wide grid, wrapping rows."""
    x = y = row_height = 0
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
        if panel.get("options") is None:  # the SDK leaves it null when no option was set
            panel["options"] = {}
        pos = panel["gridPos"]
        if x + pos["w"] > 24:
            x, y, row_height = 0, y + row_height, 0
        pos["x"], pos["y"] = x, y
        x += pos["w"]
        row_height = max(row_height, pos["h"])


def build_dashboards(clickhouse_uid: str = CLICKHOUSE_UID,
                     prometheus_uid: str = PROMETHEUS_UID) -> dict[str, dict[str, Any]]:
    """Every dashboard, by uid."""
    return {spec.uid: build_dashboard(spec, clickhouse_uid, prometheus_uid) for spec in DASHBOARDS}


def to_plain(model: Any) -> Any:
    """An SDK model as plain JSON data (dicts, lists, numbers, strings)."""
    return json.loads(json.dumps(model, cls=JSONEncoder))
