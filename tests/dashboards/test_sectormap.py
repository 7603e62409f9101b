"""Placing institutions on the schematic map."""

from __future__ import annotations

import math

from finsa.dashboards import sectormap


def _row(ident, region="", lat=None, lon=None, level=1, criticality=3):
    return {"institution_id": ident, "name": ident.upper(), "region": region, "latitude": lat,
            "longitude": lon, "level": level, "criticality": criticality}


def _inside_frame(x, y):
    return 0 <= x <= sectormap.WIDTH and 0 <= y <= sectormap.HEIGHT


def test_coordinates_keep_north_up_and_west_left():
    rows = [_row("north", lat=47.0, lon=8.0), _row("south", lat=45.0, lon=8.5), _row("east", lat=46.0, lon=10.0)]
    (nx, ny), (sx, sy), (ex, ey) = sectormap.place(rows)
    assert ny < sy and ex > nx and ex > sx
    assert all(_inside_frame(x, y) for x, y in sectormap.place(rows))


def test_regions_are_used_without_coordinates_and_shared_regions_spread_out():
    rows = [_row("a", "north"), _row("b", "north"), _row("c", "South"), _row("d", "atlantis")]
    points = sectormap.place(rows)
    assert points[0] != points[1]
    assert math.dist(points[0], sectormap.REGION_ANCHORS["north"]) < 50
    assert points[2] == sectormap.REGION_ANCHORS["south"]
    assert points[3] == sectormap.REGION_ANCHORS["central"]  # unknown region: the centre


def test_zero_or_nan_coordinates_count_as_unknown():
    rows = [_row("a", "west", lat=0.0, lon=0.0), _row("b", "east", lat=float("nan"), lon=1.0)]
    assert sectormap.place(rows) == [sectormap.REGION_ANCHORS["west"], sectormap.REGION_ANCHORS["east"]]


def test_render_map_draws_one_group_per_institution_in_its_level_colour():
    rows = [_row("a", "north", level=5, criticality=5), _row("b", "south", level=1, criticality=1)]
    svg = sectormap.render_map(rows)
    assert svg.count('<g class="inst') == 2
    assert 'class="inst level-5" data-id="a"' in svg and 'fill="' + sectormap.threat.LEVELS[5][1] in svg
    assert svg.index('r="21.5"') < svg.index('r="11.5"')  # criticality sets the size
