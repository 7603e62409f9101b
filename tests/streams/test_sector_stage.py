"""The sector stage in a real worker: alerts from two payment institutions warn the third on
finsa.warnings.v1, before the attack reaches it; the picture survives a checkpoint round trip."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest

from finsa import wire
from finsa.kafka import ensure_topics, producer_config
from finsa.institutions import parse_registry
from finsa.sector.picture import SectorPicture
from finsa.streams.sector_stage import SectorStage
from tests.fakes import MemoryStore

SCANNER = "203.0.113.66"
REGISTRY = parse_registry({"institution": [
    {"id": f"pay-{i}", "name": f"Pay {i}", "subsector": "payment", "criticality": 3,
     "networks": [f"198.51.100.{i * 32}/27"]} for i in range(1, 4)]})


def scan_alerts(institutions: list[str], start_ms: int = 1_770_000_000_000) -> wire.RecordBatch:
    n = len(institutions)
    return wire.ALERT.make_batch({
        "alert_id": [f"scan-{inst}" for inst in institutions], "time_ms": start_ms + np.arange(n) * 60_000,
        "first_seen_ms": start_ms + np.arange(n) * 60_000, "institution_id": institutions,
        "entity": [SCANNER] * n, "entity_kind": ["src_ip"] * n, "target": ["many"] * n,
        "detector": ["portscan"] * n, "technique": ["T1046"] * n, "severity": [4] * n,
        "score": [50.0] * n, "confidence": [0.9] * n, "evidence": ["{}"] * n})



def test_stage_warns_the_institution_not_yet_hit_and_stores_it() -> None:
    store = MemoryStore()
    stage = SectorStage(SectorPicture(REGISTRY), store)
    stage.observe_alerts(wire.encode_batch(scan_alerts(["pay-1", "pay-2"])))
    out = stage.tick()
    warnings = out["warning"].rows()
    assert {w["scope_id"] for w in warnings if w["scope_kind"] == "institution"} == {"pay-3"}
    assert any(SCANNER in json.loads(w["indicators"]) for w in warnings)
    assert json.loads(out["campaign"].rows()[0]["institutions"]) == ["pay-1", "pay-2"]
    assert {b.type.name for b in store.batches} >= {"alert", "warning", "campaign", "level"}
    again = SectorStage(SectorPicture(REGISTRY))
    again.restore(stage.checkpoint())
    again.observe_alerts(wire.encode_batch(scan_alerts(["pay-1", "pay-2"])))  # redelivered: ignored
    assert "warning" not in again.tick()


@pytest.mark.integration
def test_worker_publishes_warnings_from_alerts(tmp_path) -> None:
    from confluent_kafka import Producer

    from finsa.streams.faust_app import WorkerSettings
    from finsa.streams.broker import EmbeddedBroker
    from finsa.app.run import topic_partitions
    from finsa.streams.processor import FlowProcessor
    from finsa.streams.service import StreamService
    from tests.streams.test_worker import _consume_all

    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, topic_partitions(2))
        producer = Producer(producer_config(broker.bootstrap, "test"))
        producer.produce(wire.TOPICS["alerts"], wire.encode_batch(scan_alerts(["pay-1", "pay-2"])))
        assert producer.flush(10) == 0
        stage = SectorStage(SectorPicture(REGISTRY), MemoryStore())
        service = StreamService(WorkerSettings(broker.bootstrap, app_id="sector-test", datadir=tmp_path,
                                               session_timeout_s=4), FlowProcessor(MemoryStore(), None), stage)

        async def run() -> None:
            await service.start()
            deadline = time.monotonic() + 60
            while stage.alerts_seen < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            await service.stop()

        asyncio.run(run())
        got = _consume_all(broker.bootstrap, wire.TOPICS["warnings"], 1)
    assert got, "no warning was published"
    rows = wire.decode_batch(got[0].value(), expect=wire.WARNING).rows()
    assert "pay-3" in {r["scope_id"] for r in rows}


def test_campaign_indicators_reach_the_intel_detector_at_institutions_not_yet_hit() -> None:
    from finsa.detectors.engine import DetectionEngine
    from finsa.streams.sector_stage import feed_intel

    engine = DetectionEngine()
    stage = SectorStage(SectorPicture(REGISTRY), blocklist_sinks=[feed_intel(engine)])
    stage.observe_alerts(wire.encode_batch(scan_alerts(["pay-1", "pay-2"])))
    stage.tick()
    t = 1_770_000_400_000
    flows = wire.FLOW.make_batch({
        "flow_id": [1], "first_seen_ms": [t], "last_seen_ms": [t + 10], "institution_id": ["pay-3"],
        "ip_version": [4], "protocol": [6], "src_ip": [SCANNER], "dst_ip": ["198.51.100.100"],
        "src_port": [40000], "dst_port": [443], "src2dst_packets": [3], "src2dst_bytes": [180],
        "dst2src_packets": [3], "dst2src_bytes": [180], "src2dst_tcp_flags": [27], "dst2src_tcp_flags": [27]})
    alerts = engine.process(flows).rows()
    assert [(a["institution_id"], a["detector"]) for a in alerts if SCANNER in (a["entity"], a["target"])] \
        == [("pay-3", "intel")]


def test_the_blocklist_never_names_a_members_own_addresses() -> None:
    stage = SectorStage(SectorPicture(REGISTRY))
    alerts = scan_alerts(["pay-1", "pay-2"])
    internal = wire.ALERT.make_batch({**{k: v for k, v in alerts.columns.items()},
                                      "alert_id": ["int-1", "int-2"], "entity": ["10.9.8.7", "198.51.100.40"],
                                      "technique": ["T1071", "T1071"]})
    stage.observe_alerts(wire.encode_batch(alerts))
    stage.observe_alerts(wire.encode_batch(internal))
    stage.tick()
    values = {e.value for e in stage.blocklist()}
    assert SCANNER in values
    assert not {v for v in values if v.startswith("10.") or v.startswith("198.51.100.")}


def test_warm_loads_the_geoip_tables_and_a_failure_only_logs(monkeypatch, caplog) -> None:
    from finsa.sector import geo
    from finsa.streams import sector_stage

    SectorStage.warm()  # what a worker runs in a thread at start-up, so no alert waits for it
    assert geo._database is not None
    monkeypatch.setattr(sector_stage, "load_tables", lambda: (_ for _ in ()).throw(OSError("no data file")))
    SectorStage.warm()
    assert "GeoIP tables not loaded at start-up: no data file" in caplog.text
