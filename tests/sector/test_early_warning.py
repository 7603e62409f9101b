"""Early warnings: forecasts on rising and flat series, drift toward an incident's lead-up."""

from __future__ import annotations

import json

import pickle

from finsa.sector.early_warning import DriftWatch, forecast_warnings
from finsa.sector.forecast import VolumeForecaster
from finsa.sector.picture import SectorPicture
from tests.sector.sector_helpers import MIN, T0, alerts, registry


def feed(forecaster, key, counts, start=T0):
    crossings = []
    for i, n in enumerate(counts):
        if n:
            forecaster.add(key, start + i * MIN, count=n)
        crossings += [(i, c) for c in forecaster.advance(start + (i + 1) * MIN)]
    return crossings


def test_rising_series_warns_before_it_crosses():
    f = VolumeForecaster(default_threshold=30, horizon_steps=15)
    crossings = feed(f, "technique:T1110", [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32])
    assert crossings, "a steadily rising series must be forecast to cross"
    minute, first = crossings[0]
    assert first.last_value < 30 <= max(first.forecast) and minute < 14  # before the real crossing
    assert len(crossings) == 1  # cooldown: once


def test_flat_and_noisy_flat_series_do_not_warn():
    f = VolumeForecaster(default_threshold=30)
    assert feed(f, "subsector:bank", [10] * 40) == []
    assert feed(VolumeForecaster(default_threshold=30), "subsector:bank", [8, 12, 9, 11, 10, 12, 8] * 6) == []


def test_minutes_without_alerts_count_as_zero():
    f = VolumeForecaster(default_threshold=30)
    feed(f, "technique:T1046", [5] * 6)
    f.advance(T0 + 20 * MIN)
    assert f.series["technique:T1046"].last == 0 and f.series["technique:T1046"].history == 20


def test_threshold_scales_with_a_busy_series_baseline():
    f = VolumeForecaster(default_threshold=10, relative=3.0)
    assert feed(f, "subsector:bank", [50] * 30) == []  # 50/min is this series' normal


def test_forecaster_pickles_mid_series():
    f = VolumeForecaster(default_threshold=30)
    feed(f, "technique:T1110", [2, 4, 6, 8])
    g = pickle.loads(pickle.dumps(f))
    assert [c for _, c in feed(f, "technique:T1110", [10, 12, 14], T0 + 4 * MIN)] == \
           [c for _, c in feed(g, "technique:T1110", [10, 12, 14], T0 + 4 * MIN)]


def test_subsector_crossing_warns_each_institution_technique_the_sector():
    f = VolumeForecaster(default_threshold=30)
    [(_, crossing)] = feed(f, "subsector:payment", list(range(2, 40, 3)))[:1]
    warned = forecast_warnings(crossing, registry())
    assert sorted(w.institution_id for w in warned) == [f"pay-{c}" for c in "abcde"]
    assert all(w.kind == "forecast" and w.evidence["series"] == "subsector:payment" for w in warned)
    crossing = type(crossing)("technique:T1110", crossing.time_ms, 1, crossing.forecast, 30, 3)
    assert [w.institution_id for w in forecast_warnings(crossing, registry())] == [""]


def test_sector_picture_forecast_warning_on_a_rising_alert_volume():
    sp = SectorPicture(registry(), forecast_thresholds={"subsector": 25, "technique": 1000})
    kinds = []
    for minute in range(12):
        n = 2 * (minute + 1)
        sp.observe_alerts(alerts([{"institution_id": "bank-x", "time_ms": T0 + minute * MIN + i,
                                   "entity": f"198.51.{minute}.{i}", "severity": 2} for i in range(n)]))
        kinds += [(w.kind, w.institution_id) for w in sp.tick(T0 + (minute + 1) * MIN).warnings]
    assert ("forecast", "bank-x") in kinds and ("forecast", "bank-y") in kinds


def incident_lead_up(watch, inst, t, techniques):
    for i, tech in enumerate(techniques):
        watch.observe({"institution_id": inst, "time_ms": t + i * 1000, "technique": tech, "severity": 2})


def test_drift_toward_an_incident_lead_up_warns():
    watch = DriftWatch(registry(), threshold=0.8, min_mass=3.0)
    incident_lead_up(watch, "bank-x", T0, ["T1046"] * 4 + ["T1110"] * 4)
    watch.observe({"institution_id": "bank-x", "time_ms": T0 + 10_000, "technique": "T1499", "severity": 5})
    incident_lead_up(watch, "bank-y", T0 + MIN, ["T1046"] * 3 + ["T1110"] * 2)
    incident_lead_up(watch, "pay-a", T0 + MIN, ["T1071"] * 6)  # unrelated mix
    warned = watch.check(T0 + 2 * MIN)
    assert [(w.institution_id, w.kind) for w in warned] == [("bank-y", "drift")]
    assert warned[0].evidence["similarity"] >= 0.8
    assert "bank-x" not in warned[0].why + json.dumps(warned[0].evidence)  # never who had the incident
    assert watch.check(T0 + 3 * MIN) == []  # once per pattern and institution


def test_no_pattern_without_a_lead_up():
    watch = DriftWatch(registry())
    watch.observe({"institution_id": "bank-x", "time_ms": T0, "technique": "T1499", "severity": 5})
    assert watch.patterns == {}
