"""One :class:`~finsa.dashboards.panels.Panel` as a Grafana panel, built with grafana-foundation-sdk.

The panel's kind picks the Grafana panel type (:data:`GRAFANA_TYPES`); its SQL becomes a query of
the ClickHouse data source (:mod:`finsa.dashboards.grafana_sql`), its unit and thresholds the
field config. Columns named ``*_ms`` hold epoch milliseconds: time series and heatmaps convert
the first one to Grafana's time type and turn the long result (time, series, value) into one
series per name. A ``matrix`` result (row, column, value) is pivoted by Grafana's "grouping to
matrix" transformation and shown as a table with coloured cells.

>>> from finsa.dashboards.panels import ALL_PANELS_BY_ID
>>> from finsa.dashboards.grafana import to_plain
>>> p = to_plain(grafana_panel(ALL_PANELS_BY_ID["institution_threat"], "ds").build())
>>> p["type"], p["targets"][0]["datasource"]["type"]
('geomap', 'grafana-clickhouse-datasource')
"""

from __future__ import annotations

from typing import Any, Sequence

from grafana_foundation_sdk.builders import (barchart, common as common_b, dashboard as dash_b, geomap,
                                             heatmap, stat, table, timeseries)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import geomap as geomap_m

from finsa.dashboards.grafana_sql import to_grafana
from finsa.dashboards.panels import Panel

__all__ = ["CLICKHOUSE_TYPE", "GRAFANA_TYPES", "SIZES", "ClickHouseQuery", "Link", "grafana_panel",
           "datasource_ref", "output_columns"]

#: Plugin id of Grafana's ClickHouse data source.
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
#: panel kind -> Grafana panel type.
GRAFANA_TYPES = {"stat": "stat", "table": "table", "bar": "barchart", "map": "geomap",
                 "timeseries": "timeseries", "heatmap": "heatmap", "matrix": "table"}
#: panel kind -> (height, width) in grid units (the grid is 24 wide).
SIZES = {"stat": (6, 6), "table": (9, 12), "bar": (8, 12), "map": (12, 18),
         "timeseries": (8, 12), "heatmap": (8, 12), "matrix": (8, 12)}
_BUILDERS: dict[str, Any] = {"stat": stat.Panel, "table": table.Panel, "bar": barchart.Panel, "map": geomap.Panel,
             "timeseries": timeseries.Panel, "heatmap": heatmap.Panel, "matrix": table.Panel}


def datasource_ref(uid: str, type_: str = CLICKHOUSE_TYPE) -> dashboard.DataSourceRef:
    return dashboard.DataSourceRef(type_val=type_, uid=uid)


class _RawQuery(cogvariants.Dataquery):
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


class ClickHouseQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw-SQL query of the ClickHouse data source (the SDK ships no builder for it)."""

    def __init__(self, sql: str, datasource_uid: str, ref_id: str = "A") -> None:
        self._data = {"refId": ref_id, "datasource": {"type": CLICKHOUSE_TYPE, "uid": datasource_uid},
                      "editorType": "sql", "queryType": "table", "format": 1, "rawSql": sql}

    def build(self) -> cogvariants.Dataquery:
        return _RawQuery(self._data)


class Link(dash_b.DashboardLink):
    """A data link: clicking a value opens ``url`` (Grafana interpolates its variables)."""

    def __init__(self, title: str, url: str) -> None:
        super().__init__(title)
        self.url(url).target_blank(False)


def _thresholds(panel: Panel) -> dash_b.ThresholdsConfig:
    steps = [dashboard.Threshold(value=None, color=panel.thresholds[0].color if panel.thresholds else "green")]
    steps += [dashboard.Threshold(value=t.value, color=t.color) for t in panel.thresholds[1:]]
    return dash_b.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(steps)


def _transform(id_: str, options: dict[str, Any]) -> dashboard.DataTransformerConfig:
    return dashboard.DataTransformerConfig(id_val=id_, options=options)


def _time_series_transforms(time_field: str, shape: str) -> list[dashboard.DataTransformerConfig]:
    return [_transform("convertFieldType", {"fields": {}, "conversions": [
                {"targetField": time_field, "destinationType": "time"}]}),
            _transform("prepareTimeSeries", {"format": shape})]


def _colour_cells(builder: Any, field: str) -> None:
    cell = common.TableColoredBackgroundCellOptions(mode=common.TableCellBackgroundDisplayMode.BASIC)
    prop = dashboard.DynamicConfigValue(id_val="custom.cellOptions", value=cell)
    if field:
        builder.override_by_name(field, [prop])
    else:
        builder.override_by_field_type("number", [prop])


def _kind_options(builder: Any, panel: Panel, columns: Sequence[str]) -> None:
    """What each kind needs beyond title, query, unit and thresholds."""
    kind = panel.kind
    if kind == "stat":
        builder.reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).fields(
            f"/^{panel.field}$/" if panel.field else "").values(False))
        builder.color_mode(common.BigValueColorMode.BACKGROUND)
    elif kind == "table" and panel.field and panel.thresholds:
        _colour_cells(builder, panel.field)
    elif kind == "bar" and columns:
        builder.x_field(columns[0])
    elif kind == "map":
        location = (common_b.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                    .latitude("latitude").longitude("longitude"))
        layer = (common_b.MapLayerOptions().type("markers").name("Institutions").location(location)
                 .config({"color": {"field": panel.field, "fixed": "green"},
                          "size": {"field": "criticality", "min": 6, "max": 20, "fixed": 8},
                          "showLegend": True}))
        builder.view(geomap.MapViewConfig().id("fit").all_layers(True)).layers([layer])
        builder.basemap(common_b.MapLayerOptions().type("default").name("Basemap"))
        builder.tooltip(geomap.TooltipOptions().mode(geomap_m.TooltipMode.DETAILS))
    elif kind in ("timeseries", "heatmap"):
        time_field = next((c for c in columns if c.endswith("_ms")), columns[0] if columns else "time")
        builder.transformations(_time_series_transforms(time_field, "multi" if kind == "timeseries" else "wide"))
        if kind == "heatmap":
            builder.calculate(False)
    elif kind == "matrix" and len(columns) >= 3:
        builder.with_transformation(_transform("groupingToMatrix", {
            "rowField": columns[0], "columnField": columns[1], "valueField": panel.field or columns[2]}))
        _colour_cells(builder, "")


def _outer_select(text: str) -> int:
    """Where the outermost ``SELECT`` keyword starts (after a ``WITH (...) AS x`` clause)."""
    depth, upper = 0, text.upper()
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and upper.startswith("SELECT", i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            return i
    raise ValueError("no SELECT outside parentheses")


def output_columns(sql: str) -> list[str]:
    """Names of the columns a ``SELECT`` returns, read from its outermost select list.

    >>> output_columns("SELECT a, f(b, c) AS d, t.e AS e FROM (SELECT 1 AS z) AS t")
    ['a', 'd', 'e']
    >>> output_columns("WITH (SELECT max(x) FROM t) AS m SELECT m AS top FROM t")
    ['top']
    """
    text = sql.strip()
    start, depth = _outer_select(text) + 6, 0
    items: list[str] = []
    current: list[str] = []
    i = start
    while i < len(text):
        ch = text[i]
        if depth == 0 and text[i:i + 6].upper() == " FROM " or depth == 0 and text[i:i + 6].upper() == "\nFROM ":
            break
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    items.append("".join(current))
    names = []
    for item in items:
        words = item.replace("\n", " ").split()
        names.append(words[-1].split(".")[-1] if words else "")
    return names


def grafana_panel(panel: Panel, datasource_uid: str, links: Sequence[Link] = (),
                  size: tuple[int, int] | None = None) -> Any:
    """An SDK panel builder for ``panel``, optionally with data links and another size."""
    columns = output_columns(panel.sql)
    height, width = size or SIZES[panel.kind]
    builder = (_BUILDERS[panel.kind]().title(panel.title).description(panel.description)
               .datasource(datasource_ref(datasource_uid)).height(height).span(width)
               .with_target(ClickHouseQuery(to_grafana(panel.sql), datasource_uid)).unit(panel.unit))
    if panel.thresholds:
        builder.thresholds(_thresholds(panel))
    if links:
        builder.data_links(list(links))
    _kind_options(builder, panel, columns)
    return builder
