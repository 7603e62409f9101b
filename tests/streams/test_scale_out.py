"""Two stream workers equal one: real Tansu broker, real Faust workers (two StreamService
instances in one asyncio loop, same app id), one real chdb store shared in process.

The input is a short sector-campaign scenario metered offline, cut into per-institution batches
(5 s of flow time each, as agents send them) keyed by institution on a 4-partition flow topic,
so each institution's flows stay with one worker. It is produced in flow-time order, 30 s of
flow time at a time, each slice only once the previous one is processed and its alerts reached
the sector picture: flows arrive in time order, as they do live. Two workers both process
batches, and store the same alerts, campaigns and warnings as one worker does.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from faust.exceptions import ConsumerNotStarted

from finsa import wire
from finsa.kafka import ensure_topics, producer_config
from finsa.streams.faust_app import WorkerSettings
from finsa.streams.broker import EmbeddedBroker
from finsa.app.run import topic_partitions
from finsa.streams.processor import FlowProcessor
from finsa.streams.service import StreamService

pytestmark = pytest.mark.integration

ACTOR = "203.0.113.30"
SLICE_MS = 30_000


class CountingProcessor(FlowProcessor):
    """A FlowProcessor that also counts the alerts it handed to the agent for publishing, and
    notes whose flows it processed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.alerts_out = 0
        self.institutions: set[str] = set()
        self.flow_observers.append(lambda flows: self.institutions.update(flows.columns["institution_id"].tolist()))

    def store_group(self, prepared):  # the worker prepares (detects) and stores a group in two steps
        outcome = super().store_group(prepared)
        self.alerts_out += len(outcome.alerts) if outcome.alerts is not None else 0
        return outcome


@dataclass
class Outcome:
    """What one run left in its store, and how the batches were shared."""

    batches: list[int]  # per worker
    institutions: list[set[str]]  # whose flows each worker processed
    sector_alerts: list[int]  # alerts each worker's sector picture received
    alerts: set[tuple[str, str, str, str]]  # institution, alert id, entity, technique
    campaigns: set[tuple]  # the final row of each: institutions, entities, techniques, first and last seen
    warnings: set[tuple[str, str, str, str]]  # kind, scope kind, scope id, techniques
    flows: int


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> dict:
    """A five-minute sector campaign, metered, as (slice, institution, payload) messages."""
    from finsa.scenario.generator import generate_scenario
    from finsa.app.offline import flow_batches, meter_sources, scenario_sources

    folder = tmp_path_factory.mktemp("sector")
    generate_scenario(folder, duration_s=300, scale=0.05, attack_set="sector")
    flows = meter_sources(scenario_sources(folder))
    slices: dict[int, list[tuple[str, bytes]]] = {}
    for inst in sorted(set(flows.columns["institution_id"].tolist())):
        mine = flows.take(flows.columns["institution_id"] == inst)
        for batch in flow_batches(mine, max_flows=5000, batch_ms=5000):
            key = int(batch.columns["last_seen_ms"].max()) // SLICE_MS
            slices.setdefault(key, []).append((inst, wire.encode_batch(batch)))
    return {"folder": folder, "slices": [slices[k] for k in sorted(slices)], "flows": len(flows)}


def _stage_and_processor(folder: Path, store):
    from finsa.institutions import load_registry
    from finsa.app.offline import make_engine
    from finsa.sector.picture import SectorPicture
    from finsa.streams.sector_stage import SectorStage

    class TickedStage(SectorStage):
        """Notes how many alerts its picture had seen when a tick (which stores the campaigns and
        warnings they led to) finished: ``alerts_seen`` alone runs ahead of the stored picture."""

        alerts_ticked = 0

        def tick(self, now_ms: int | None = None):
            seen = self.alerts_seen
            batches = super().tick(now_ms)
            self.alerts_ticked = max(self.alerts_ticked, seen)
            return batches

    registry = folder / "institutions.toml"
    stage = TickedStage(SectorPicture(load_registry(registry)), store)
    engine = make_engine(folder / "detectors.toml", registry)
    return stage, CountingProcessor(store, engine, flow_observers=[stage.observe_flows])


async def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _feed(services: list[StreamService], stages: list, processors: list[CountingProcessor],
                slices: list[list[tuple[str, bytes]]], bootstrap: str) -> None:
    from confluent_kafka import Producer

    def assignment(service: StreamService) -> set:
        try:
            return service.app.consumer.assignment()
        except ConsumerNotStarted:
            return set()

    def assigned() -> bool:
        sets = [assignment(s) for s in services]
        flows = [{tp.partition for tp in got if tp.topic == wire.TOPICS["flows"]} for got in sets]
        return all(flows) and set().union(*flows) == {0, 1, 2, 3} and sum(len(f) for f in flows) == 4

    await _wait_for(assigned, 40, "every worker to hold flow partitions")
    producer = Producer(producer_config(bootstrap, "scale-out-test"))
    sent = 0
    for messages in slices:
        for inst, payload in messages:
            producer.produce(wire.TOPICS["flows"], payload, key=inst.encode())
        assert producer.flush(10) == 0
        sent += len(messages)
        await _wait_for(lambda sent=sent: sum(p.batches for p in processors) >= sent, 30, "the slice to be processed")
        await _wait_for(lambda: sum(s.alerts_ticked for s in stages) >= sum(p.alerts_out for p in processors), 30,
                        "the alerts to reach the sector picture and its stored outputs")


def run_workers(workers: int, scenario: dict, tmp_path: Path) -> Outcome:
    """Run ``workers`` workers over the scenario's messages; what they stored."""
    from finsa.storage.backend import open_store

    store = open_store(data_dir=tmp_path / f"store-{workers}")
    store.migrate()
    pairs = [_stage_and_processor(scenario["folder"], store) for _ in range(workers)]
    stages, processors = [s for s, _ in pairs], [p for _, p in pairs]
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, topic_partitions(4))
        services = [StreamService(WorkerSettings(broker.bootstrap, app_id="scale-out", session_timeout_s=4,
                                                 group_within_s=0.2, datadir=tmp_path / f"faust-{workers}-{k}"), p, s)
                    for k, (s, p) in enumerate(pairs)]

        async def run() -> None:
            for service in services:
                await service.start()
            try:
                await _feed(services, stages, processors, scenario["slices"], broker.bootstrap)
                for service in services:
                    assert service.failed is None, service.failed
            finally:
                for service in services:
                    await service.stop()

        asyncio.run(run())
    try:
        return _stored(store, processors, stages)
    finally:
        store.close()


def _stored(store, processors: list[CountingProcessor], stages: list) -> Outcome:
    alerts = {tuple(r) for r in store.query(
        "SELECT institution_id, alert_id, entity, technique FROM alerts FINAL").rows}
    campaigns = {}
    for cid, *row in store.query("SELECT campaign_id, institutions, entities, techniques, first_seen_ms, "
                                 "last_seen_ms FROM campaigns ORDER BY alerts, last_seen_ms").rows:
        campaigns[cid] = tuple(row)  # the latest row of each campaign (ids may differ between runs)
    warnings = {(title.split(" in ")[0].split(":")[0], *rest) for title, *rest in store.query(
        "SELECT title, scope_kind, scope_id, techniques FROM warnings").rows}
    flows = store.query("SELECT count() FROM flows").rows[0][0]
    return Outcome([p.batches for p in processors], [p.institutions for p in processors],
                   [s.alerts_seen for s in stages], alerts, set(campaigns.values()), warnings, flows)


@pytest.fixture(scope="module")
def one(scenario, tmp_path_factory) -> Outcome:
    return run_workers(1, scenario, tmp_path_factory.mktemp("one"))


@pytest.fixture(scope="module")
def two(scenario, tmp_path_factory) -> Outcome:
    return run_workers(2, scenario, tmp_path_factory.mktemp("two"))


def test_one_worker_processes_every_batch(scenario, one) -> None:
    assert one.batches == [sum(len(m) for m in scenario["slices"])]
    assert one.flows == scenario["flows"] and one.sector_alerts == [len(one.alerts)]


def test_two_workers_share_the_batches_by_institution(scenario, one, two) -> None:
    assert sum(two.batches) == one.batches[0] and min(two.batches) > 0, two.batches  # both worked
    first, second = two.institutions
    assert first and second and not first & second  # an institution's flows stay on one worker
    assert two.flows == one.flows
    assert sorted(two.sector_alerts) == [0, len(two.alerts)]  # one worker holds the sector picture


def test_two_workers_raise_the_same_alerts_as_one(one, two) -> None:
    assert one.alerts, "no alert at all: the comparison would prove nothing"
    assert {a[0] for a in one.alerts if a[2] == ACTOR} == {"pay-a", "pay-b", "pay-c", "pay-d", "pay-e"}
    assert two.alerts == one.alerts


def test_two_workers_draw_the_same_sector_picture_as_one(one, two) -> None:
    (campaign,) = [c for c in one.campaigns if ACTOR in json.loads(c[1])]
    assert len(json.loads(campaign[0])) == 5
    spread = {w[2] for w in one.warnings if w[0] == "campaign spread"}
    assert len(spread) == 3, one.warnings  # after two hits, the other three were warned
    assert two.campaigns == one.campaigns
    assert two.warnings == one.warnings
