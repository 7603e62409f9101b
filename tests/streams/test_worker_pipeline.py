"""The worker's group pipeline: a group is prepared (decoded, verified, detected) apart from its
store write; groups are written and acknowledged in order, only after their write; a group whose
write fails stays unacknowledged with every group after it; a group makes one alert write."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import pytest

from finsa import wire
from finsa.batchauth import SERVICE_SIGNER, BatchVerifier, sign_headers
from finsa.errors import StorageError
from finsa.sector.picture import SectorPicture
from finsa.streams.faust_app import _Grouper
from finsa.streams.held_flows import HeldFlows
from finsa.streams.processor import FlowProcessor
from finsa.streams.sector_stage import SectorStage
from tests.fakes import MemoryStore
from tests.streams.test_sector_stage import REGISTRY, scan_alerts


class OneAlertPerBatch:
    """An engine giving one alert per batch it is shown (flows or ARP bindings)."""

    def process(self, batch: wire.RecordBatch) -> wire.RecordBatch:
        kind = "arpspoof" if batch.type is wire.ARP else "portscan"
        return wire.ALERT.make_batch({"alert_id": [f"{kind}-{batch.batch_id.hex()}"], "detector": [kind],
                                      "institution_id": ["bank-a"]})


def _flows(port: int) -> bytes:
    return wire.encode_batch(wire.FLOW.make_batch({"institution_id": ["bank-a"], "dst_port": [port]}))


def _bindings() -> bytes:
    return wire.encode_batch(wire.ARP.make_batch({"institution_id": ["bank-a"], "ip": ["10.0.0.1"], "mac": [1]}))


def test_prepare_stores_nothing_and_a_group_makes_one_alert_write() -> None:
    store = MemoryStore()
    proc = FlowProcessor(store, OneAlertPerBatch())
    prepared = proc.prepare_group([_flows(22), _bindings(), _flows(80)])
    assert store.batches == [] and len(prepared.flows) == 2 and len(prepared.alerts) == 1
    calls = []
    store.insert_many = lambda batches: calls.append([b.type.name for b in batches]) or len(batches)
    outcome = proc.store_group(prepared)
    assert calls == [["arp"], ["alert", "alert"], ["flow", "flow"]]  # ARP alerts with the flows', before the flows
    assert sorted(outcome.alerts.columns["detector"].tolist()) == ["arpspoof", "portscan"]


class _Event:
    def __init__(self, payload: bytes, acked: list) -> None:
        self.value, self.message, self._acked = payload, SimpleNamespace(headers=None), acked

    def ack(self) -> None:
        self._acked.append(self.value)


class _Topic:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, key=None, value=b"", headers=None) -> None:
        self.sent.append(value)


class _GatedStore(MemoryStore):
    """Writes wait for ``gate``; a flow batch with dst_port 13 fails."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def insert_many(self, batches: list[wire.RecordBatch]) -> int:
        self.gate.wait(10)
        if any(b.type is wire.FLOW and 13 in b.columns["dst_port"].tolist() for b in batches):
            raise StorageError("down")
        return super().insert_many(batches)


def test_groups_are_stored_and_acknowledged_in_order_and_a_failed_one_holds_back_the_rest() -> None:
    async def main() -> None:
        store, acked, alerts = _GatedStore(), [], _Topic()
        proc = FlowProcessor(store, OneAlertPerBatch(), should_stop=lambda: True)  # no retry: the failure surfaces
        grouper = _Grouper(proc, alerts, _Topic(), group_max=100, max_in_flight=4)
        payloads = [_flows(port) for port in (1, 2, 13, 4)]
        for payload in payloads:
            await grouper.add(_Event(payload, acked))
            await grouper.flush()
        assert acked == [] and len(grouper._in_flight) == 4  # four groups in flight, none written yet
        store.gate.set()
        await asyncio.wait(list(grouper._in_flight))
        with pytest.raises(StorageError):
            await grouper.flush()  # the third group's failure is raised into the agent
        assert acked == payloads[:2]  # in order; the failed group and the one after it stay unacked, unwritten
        assert [b.columns["dst_port"].tolist() for b in store.batches if b.type is wire.FLOW] == [[1], [2]]
        assert len(alerts.sent) == 2

    asyncio.run(main())


def test_held_flows_are_written_as_one_block_and_their_groups_acked_only_after_it() -> None:
    async def main() -> None:
        store, acked, alerts, writes = MemoryStore(), [], _Topic(), []
        write = store.insert_many
        store.insert_many = lambda batches: writes.append((batches[0].type.name, [
            int(b.columns["dst_port"][0]) for b in batches if b.type is wire.FLOW])) or write(batches)
        proc = FlowProcessor(store, OneAlertPerBatch(), held=HeldFlows(max_rows=3, max_age_s=3600),
                             should_stop=lambda: True)  # a failing write surfaces instead of retrying
        grouper = _Grouper(proc, alerts, _Topic(), group_max=100)
        payloads = [_flows(port) for port in (1, 2, 3, 4)]

        async def group(payload: bytes) -> None:
            await grouper.add(_Event(payload, acked))
            await grouper.flush()
            await asyncio.wait(list(grouper._in_flight))

        await group(payloads[0])
        await group(payloads[1])
        assert acked == [] and [w[0] for w in writes] == ["alert", "alert"] and len(alerts.sent) == 2
        await grouper.flush()  # the timer, nothing pending: the held flows are not due yet
        assert acked == [] and proc.held.rows == 2
        await group(payloads[2])  # the third row makes them due: one write, three groups acked in order
        assert writes[-1] == ("flow", [1, 2, 3]) and acked == payloads[:3]
        await group(payloads[3])
        assert acked == payloads[:3]
        await grouper.drain()  # a stopping worker writes what is held
        assert writes[-1] == ("flow", [4]) and acked == payloads and not proc.held

    asyncio.run(main())


def test_the_sector_stage_does_not_store_again_the_alerts_a_worker_signed() -> None:
    store = MemoryStore()
    keys = {"pay-1": b"1" * 32, SERVICE_SIGNER: b"s" * 32}
    stage = SectorStage(SectorPicture(REGISTRY), store, verifier=BatchVerifier(keys))
    own = wire.encode_batch(scan_alerts(["pay-1", "pay-2"]))
    forwarded = wire.encode_batch(scan_alerts(["pay-1"], start_ms=1_770_000_500_000))
    assert stage.observe_alerts(own, sign_headers(own, SERVICE_SIGNER, keys[SERVICE_SIGNER])) is None
    assert stage.observe_alerts(forwarded, sign_headers(forwarded, "pay-1", keys["pay-1"])) is None
    assert [len(b) for b in store.batches if b.type is wire.ALERT] == [1]  # the forwarded batch only
    assert stage.alerts_seen == 3  # the picture learned from both
