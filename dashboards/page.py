"""Server-side HTML of the threat view: the page as it is before any script runs.

The page template is ``static/index.html``; this module fills it with the sector map, the
sector level and the panels' tables, so a client without JavaScript (or ``chromium --dump-dom``
before the first refresh) already sees every institution and its level. ``static/view.js``
then refreshes the same elements from the JSON API. Everything from the store is escaped.

>>> cell("severity", 4)
'<span class="badge sev-4">high</span>'
>>> cell("entity", "<b>")
'&lt;b&gt;'
"""

from __future__ import annotations

import html
import json
import time
from importlib import resources
from string import Template
from typing import Any, Mapping, Sequence

from finsa.dashboards import sectormap, threat
from finsa.dashboards.panels import WEB_PANELS, Panel
from finsa.wire import SEVERITIES

__all__ = ["cell", "render_table", "render_bars", "render_page", "template", "CONTENT_SECURITY_POLICY",
           "DISPLAY_COLUMNS", "content_security_policy", "PAGE_HEADERS"]

_LEVEL_COLUMNS = {"level"}
_SEVERITY_COLUMNS = {"severity", "max_severity"}


def template(name: str) -> str:
    """Text of a file in the package's ``static`` folder."""
    return resources.files("finsa.dashboards").joinpath("static", name).read_text("utf-8")


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def cell(column: str, value: Any) -> str:
    """One value as table-cell HTML: times, levels and severities get their own look."""
    if value is None:
        return '<span class="badge lvl-0">withheld</span>' if column in _LEVEL_COLUMNS else ""
    if column in _LEVEL_COLUMNS:
        level = int(value)
        name = threat.LEVELS.get(level, ("?", ""))[0]
        return f'<span class="badge lvl-{level}">{level} {name}</span>'
    if column in _SEVERITY_COLUMNS:
        sev = int(value)
        return f'<span class="badge sev-{sev}">{SEVERITIES.get(sev, sev)}</span>'
    if column.endswith("_ms") and isinstance(value, int) and value > 0:
        return f'<time data-ms="{value}">{_clock(value)}</time>'
    return html.escape(str(value))


def _heading(column: str) -> str:
    return html.escape(column.removesuffix("_ms").replace("_", " "))


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]],
                 row_ids: Sequence[str] | None = None, hrefs: Sequence[str] | None = None) -> str:
    """A ``<table>`` of a query result; an empty result says so. ``row_ids`` become the rows'
    ``data-id`` (what a click selects); ``hrefs`` make each row's first cell a link.

    >>> render_table(["a"], [[1]], ["x"], ["alerts/x"])
    '<table><thead><tr><th class="c-a">a</th></tr></thead><tbody><tr data-id="x"><td class="c-a"><a href="alerts/x">1</a></td></tr></tbody></table>'
    """
    head = "".join(f'<th class="c-{html.escape(c)}">{_heading(c)}</th>' for c in columns)
    if not rows:
        body = f'<tr><td class="empty" colspan="{len(columns)}">nothing in this range</td></tr>'
    else:
        ids = [f' data-id="{html.escape(str(i))}"' for i in row_ids] if row_ids else [""] * len(rows)
        links = [html.escape(h, quote=True) for h in hrefs] if hrefs else [""] * len(rows)
        body = "".join(
            f"<tr{ident}>" + "".join(
                f'<td class="c-{html.escape(c)}">' + (f'<a href="{href}">{cell(c, v)}</a>' if href and k == 0
                                                       else cell(c, v)) + "</td>"
                for k, (c, v) in enumerate(zip(columns, row))) + "</tr>"
            for ident, href, row in zip(ids, links, rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_bars(columns: Sequence[str], rows: Sequence[Sequence[Any]], field: str) -> str:
    """Horizontal bars of ``field`` (a level: out of 5) labelled by the first column; the
    other columns as a detail line. Mirrored by ``bars`` in view.js."""
    if not rows:
        return '<p class="empty">nothing in this range</p>'
    top = 5.0 if field in _LEVEL_COLUMNS else max(float(r[columns.index(field)] or 0) for r in rows) or 1.0
    out = []
    for row in rows:
        d = dict(zip(columns, row))
        value = float(d.get(field) or 0)
        cls = f"lvl-{int(value)}" if field in _LEVEL_COLUMNS else "plain"
        detail = " · ".join(f"{_heading(c)} {html.escape(str(v))}" for c, v in d.items()
                            if c not in (columns[0], field))
        out.append(f'<div class="bar-row"><span class="bar-label">{html.escape(str(row[0]))}</span>'
                   f'<span class="bar-track"><span class="bar {cls}" style="width:{100 * value / top:.0f}%">'
                   f'</span></span><span class="bar-value">{cell(field, d.get(field))}</span></div>'
                   f'<div class="bar-detail">{detail}</div>')
    return "".join(out)


_INSTITUTION_COLUMNS = ("name", "subsector", "criticality", "alerts", "detectors", "score", "level")
#: Columns each table panel shows (others stay in the JSON); mirrored by view.js via the config.
DISPLAY_COLUMNS: dict[str, tuple[str, ...]] = {
    "sector_map": _INSTITUTION_COLUMNS,
    "campaigns": ("title", "severity", "hit_in_order", "techniques", "sources", "alerts", "first_seen_ms",
                  "last_seen_ms", "status"),
    "warnings": ("time_ms", "severity", "audience", "title", "why", "indicators", "status"),
    "latest_alerts": ("time_ms", "institution", "detector", "technique", "entity", "target", "severity"),
}
#: Table panels whose rows link to a page: panel id -> (id column, link prefix). Mirrored by view.js.
ROW_LINKS = {"latest_alerts": ("alert_id", "alerts/")}
#: The page may load and fetch from its own origin only (the view works offline, by design);
#: forms (login, logout) post to this origin only.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; connect-src 'self'; "
                           "img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                           "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
#: The headers of every HTML page of the web view (the sector view, the login form, the analyst's
#: pages); a page for an institution's analyst widens the CSP for its agent (:func:`content_security_policy`).
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": CONTENT_SECURITY_POLICY, "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY"}


def content_security_policy(agent_origin: str | None = None) -> str:
    """:data:`CONTENT_SECURITY_POLICY`, letting scripts also reach ``agent_origin`` (an origin checked
    by :func:`finsa.institutions.agent_origin`: the viewer's own institution's agent).

    >>> "connect-src 'self' http://127.0.0.1:9465;" in content_security_policy("http://127.0.0.1:9465")
    True
    """
    if not agent_origin:
        return CONTENT_SECURITY_POLICY
    return CONTENT_SECURITY_POLICY.replace("connect-src 'self';", f"connect-src 'self' {agent_origin};")


def _level_key(row: Mapping[str, Any]) -> tuple:
    level = row.get("level")
    return (-(int(level) if level is not None else 0), -float(row.get("score") or 0), str(row.get("name")))


def _institutions_table(rows: Sequence[Mapping[str, Any]]) -> str:
    ordered = sorted(rows, key=_level_key)
    return render_table(_INSTITUTION_COLUMNS, [[r.get(c) for c in _INSTITUTION_COLUMNS] for r in ordered],
                        [str(r.get("institution_id")) for r in ordered])


def _display(panel_id: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    shown = [c for c in DISPLAY_COLUMNS.get(panel_id, columns) if c in columns]
    index = [list(columns).index(c) for c in shown]
    link = ROW_LINKS.get(panel_id)
    ids = [str(row[list(columns).index(link[0])]) for row in rows] if link and link[0] in columns else None
    hrefs = [link[1] + i for i in ids] if link and ids else None
    return render_table(shown, [[row[i] for i in index] for row in rows], ids, hrefs)


def _sector(row: Mapping[str, Any] | None) -> dict[str, str]:
    if row is None:
        return {"sector_level": "?", "sector_name": "no data", "sector_class": "lvl-0",
                "sector_weighted": "-", "sector_elevated": "-", "sector_alerts": "-", "sector_warned": "-"}
    level = int(row.get("level") or 1)
    return {"sector_level": str(level), "sector_name": threat.LEVELS.get(level, ("?", ""))[0],
            "sector_class": f"lvl-{level}", "sector_weighted": html.escape(str(row.get("weighted_level"))),
            "sector_elevated": html.escape(f'{row.get("elevated")} / {row.get("institutions")}'),
            "sector_alerts": html.escape(str(row.get("alerts"))),
            "sector_warned": html.escape(str(row.get("warned", "-")))}


def level_css() -> str:
    """CSS classes ``lvl-N`` / ``sev-N`` in the threat level colours (the analyst pages use them too)."""
    return _level_css()


def _level_css() -> str:
    rules = [f".lvl-{k}, .sev-{k} {{ background: {colour}; }}" for k, (_, colour) in threat.LEVELS.items()]
    return "\n".join(rules + [".lvl-0 { background: #555; }"])


def _legend() -> str:
    items = [f'<span><i class="swatch" style="background:{colour}"></i>{k} {name}</span>'
             for k, (name, colour) in threat.LEVELS.items()]
    return "".join(items + ['<span><i class="swatch warn-swatch"></i>open warning</span>'])


def _map(result: Any, rows: list[dict[str, Any]]) -> str:
    if not result:
        return '<p class="error">data unavailable</p>'
    note = "" if rows else '<p class="empty">no institutions registered yet</p>'
    return sectormap.render_map(rows) + note


def _section(panel: Panel, body: str) -> str:
    return (f'<section class="panel kind-{panel.kind}" id="panel-{panel.id}" data-panel="{panel.id}" '
            f'data-kind="{panel.kind}"><h2 title="{html.escape(panel.description)}">'
            f'{html.escape(panel.title)}</h2><div class="body">{body}</div></section>')


def _body(panel: Panel, res: Any, inst_rows: list[dict[str, Any]]) -> str:
    if panel.kind == "timeseries":
        return '<svg class="chart" viewBox="0 0 600 180"></svg><div class="legend"></div>'
    if res is None:
        return '<p class="error">data unavailable</p>'
    if panel.id == "sector_map":
        return _institutions_table(inst_rows)
    if panel.kind == "bar":
        return render_bars(res[0], res[1], panel.field)
    return _display(panel.id, res[0], res[1])


def _viewer(viewer: Mapping[str, str] | None) -> str:
    """Who is logged in, and the logout form (its CSRF token in a hidden field)."""
    if not viewer:
        return ""
    who = viewer["user"] + (f' · {viewer["institution"]}' if viewer.get("institution") else f' · {viewer["role"]}')
    return (f'<form class="viewer" method="post" action="logout"><span id="viewer">{html.escape(who)}</span>'
            f'<input type="hidden" name="csrf" value="{html.escape(viewer["csrf"])}">'
            f'<button type="submit">log out</button></form>')


def render_page(title: str, refresh_s: float, results: Mapping[str, Any], now_ms: int,
                range_ms: int, viewer: Mapping[str, str] | None = None, agent_url: str | None = None) -> str:
    """The whole page. ``results`` maps panel id -> (columns, rows) or None when it failed;
    ``viewer`` is the logged-in user (user, role, institution, csrf); ``agent_url``: the viewer's
    own institution's agent, which the page asks to read pseudonyms in clear (analysts only)."""
    inst = results.get("sector_map")
    inst_rows = [dict(zip(inst[0], r)) for r in inst[1]] if inst else []
    sector = results.get("sector_level")
    sections = {p.id: _section(p, _body(p, results.get(p.id), inst_rows)) for p in WEB_PANELS
                if p.id != "sector_level"}
    config = {"refresh_s": refresh_s, "range_ms": range_ms, "panels": [p.id for p in WEB_PANELS],
              "levels": {k: v[1] for k, v in threat.LEVELS.items()}, "severities": SEVERITIES,
              "columns": DISPLAY_COLUMNS, "links": ROW_LINKS, "institution": (viewer or {}).get("institution", "")}
    if agent_url:
        config["agent_url"] = agent_url
    fields = {
        "title": html.escape(title), "refresh_s": f"{refresh_s:g}", "updated": _clock(now_ms),
        "map": _map(inst, inst_rows), "viewer": _viewer(viewer),
        "level_css": _level_css(), "legend": _legend(),
        "config": html.escape(json.dumps(config), quote=True),
        **_sector(dict(zip(sector[0], sector[1][0])) if sector and sector[1] else None),
        **{f"panel_{pid}": text for pid, text in sections.items()},
    }
    return Template(template("index.html")).substitute(fields)
