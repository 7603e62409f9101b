"""The schematic sector map: institutions as circles on an offline outline of the country.

The outline is a hand-made shape (no map data, no network). Institutions are placed by their
latitude/longitude when they have them (fitted into the outline's frame), otherwise around an
anchor point of their region (north, south-east, capital, ...). A circle's size grows with the
institution's criticality and its colour is the threat level's colour; a level of None
(withheld from an institution's analyst) is grey. An institution with an open warning
(``open_warning``) carries a warning triangle.

>>> rows = [{"institution_id": "bank-a", "name": "Alpine Bank", "region": "north",
...          "criticality": 4, "level": 3, "latitude": None, "longitude": None}]
>>> svg = render_map(rows)
>>> 'data-id="bank-a"' in svg and "Alpine Bank" in svg and threat.LEVELS[3][1] in svg
True
"""

from __future__ import annotations

import html
import math
from typing import Any, Sequence

from finsa.dashboards import threat

__all__ = ["WIDTH", "HEIGHT", "REGION_ANCHORS", "place", "render_map"]

WIDTH, HEIGHT = 600, 420
#: The country: a hand-drawn polygon in the 600 x 420 frame.
OUTLINE = ("M120 60 L210 36 L300 52 L385 28 L470 60 L540 118 L558 198 L522 262 L548 330 "
           "L470 388 L382 370 L300 396 L214 370 L140 382 L78 322 L96 252 L52 190 L86 118 Z")
ISLAND = "M560 360 L584 350 L592 376 L570 392 L552 380 Z"
RIVER = "M385 30 C360 120 330 160 300 210 C270 260 250 320 214 370"
#: Where a region's institutions gather when they have no coordinates.
REGION_ANCHORS: dict[str, tuple[float, float]] = {
    "north": (300, 95), "northeast": (450, 115), "east": (490, 205), "southeast": (460, 320),
    "south": (300, 340), "southwest": (160, 320), "west": (125, 205), "northwest": (165, 115),
    "central": (300, 210), "capital": (300, 210), "center": (300, 210), "island": (572, 372),
}
#: How an institution whose level the viewer may not see is drawn.
WITHHELD = ("withheld", "#555")
_FRAME = (110.0, 80.0, 500.0, 350.0)  # x0, y0, x1, y1 that coordinates are fitted into
_SPREAD = 44.0  # distance from the anchor when several institutions share a region


def _coords(row: dict[str, Any]) -> tuple[float, float] | None:
    lat, lon = row.get("latitude"), row.get("longitude")
    if not isinstance(lat, (int, float)) or not isinstance(lon, (int, float)):
        return None
    if not (math.isfinite(lat) and math.isfinite(lon)) or (lat == 0 and lon == 0):
        return None  # 0,0 is what a non-nullable column holds for "unknown"
    return float(lat), float(lon)


def _fit(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Latitude/longitude pairs fitted into the frame (north up, same scale on both axes)."""
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    span = max(max(lats) - min(lats), max(lons) - min(lons), 1e-9)
    x0, y0, x1, y1 = _FRAME
    scale = min(x1 - x0, y1 - y0) / span
    mid_lat, mid_lon = (max(lats) + min(lats)) / 2, (max(lons) + min(lons)) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return [(cx + (lon - mid_lon) * scale, cy - (lat - mid_lat) * scale) for lat, lon in points]


def place(rows: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    """The (x, y) of each institution row, in the rows' order."""
    out: list[tuple[float, float] | None] = [None] * len(rows)
    located = [(i, c) for i, c in ((i, _coords(r)) for i, r in enumerate(rows)) if c is not None]
    if located:
        for (i, _), xy in zip(located, _fit([c for _, c in located])):
            out[i] = xy
    by_region: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if out[i] is None:
            region = str(row.get("region") or "").lower().replace("-", "").replace(" ", "")
            by_region.setdefault(region if region in REGION_ANCHORS else "central", []).append(i)
    for region, members in by_region.items():
        ax, ay = REGION_ANCHORS[region]
        members.sort(key=lambda i: str(rows[i].get("institution_id")))
        radius = 0.0 if len(members) == 1 else _SPREAD
        for k, i in enumerate(members):
            angle = 2 * math.pi * k / len(members) - math.pi / 2
            out[i] = (ax + radius * math.cos(angle), ay + radius * math.sin(angle))
    return [xy for xy in out if xy is not None]


def _circle(row: dict[str, Any], x: float, y: float) -> str:
    level = row.get("level")
    shown = int(level) if level is not None else 0  # None: withheld from this viewer
    name_, colour = threat.LEVELS.get(shown, WITHHELD)
    radius = 9 + 2.5 * int(row.get("criticality") or 1)
    ident = html.escape(str(row.get("institution_id", "")))
    name = html.escape(str(row.get("name") or ident))
    warned = bool(row.get("open_warning"))
    about = f"level {shown} ({name_})" if shown else "level not shared with you"
    return (
        f'<g class="inst level-{shown}{" warned" if warned else ""}" data-id="{ident}" '
        f'transform="translate({x:.1f},{y:.1f})">'
        f'<title>{name}: {about}{"; open warning" if warned else ""}</title>'
        f'<circle r="{radius:.1f}" fill="{colour}" class="dot"/>'
        f'<text class="lvl" text-anchor="middle" dy="5">{shown or "-"}</text>'
        f'<g class="warn" transform="translate({radius * 0.75:.1f},{-radius * 0.75:.1f})">'
        f'<path d="M0 -9 L8 5 L-8 5 Z"/><text text-anchor="middle" dy="3.5">!</text></g>'
        f'<text class="name" text-anchor="middle" dy="{radius + 14:.1f}">{name}</text></g>'
    )


def render_map(rows: Sequence[dict[str, Any]]) -> str:
    """The map as an inline SVG element, one ``<g data-id=...>`` per institution."""
    points = place(rows)
    circles = "".join(_circle(r, x, y) for r, (x, y) in zip(rows, points))
    labels = "".join(
        f'<text class="region" x="{x}" y="{y - 34}" text-anchor="middle">{name}</text>'
        for name, (x, y) in REGION_ANCHORS.items()
        if name in {"north", "south", "east", "west"})
    return (
        f'<svg id="sector-map" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="Sector map of institutions by threat level">'
        f'<path class="land" d="{OUTLINE}"/><path class="land" d="{ISLAND}"/>'
        f'<path class="river" d="{RIVER}"/>{labels}{circles}</svg>'
    )
