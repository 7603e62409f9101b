"""The one stream-worker builder: a stall is reported at once (line, metric, sector emergency) and
its end too; the plan is inert until start()."""

from __future__ import annotations

from finsa import wire
from finsa.app.stream_worker import StreamWorker, WorkerPlan
from finsa.streams.faust_app import WorkerSettings
from finsa.streams.progress import STALLED, Progress
from tests.fakes import MemoryStore


def test_a_stall_and_its_end_are_said_and_become_a_sector_emergency() -> None:
    said: list[str] = []
    worker = StreamWorker(WorkerPlan(WorkerSettings("127.0.0.1:9", app_id="w1"), say=said.append))
    clock = [0.0]
    worker.progress = Progress(stall_after_s=10, clock=lambda: clock[0])
    worker.store, worker.sector = MemoryStore(), object()  # a sector picture is there
    worker.progress.offer("flow", 5)
    clock[0] = 9.0
    worker.check_stall()
    assert said == [] and worker.store.batches == []
    clock[0] = 10.0
    worker.check_stall()
    worker.check_stall()  # still stalled: said once
    assert len(said) == 1 and "STALLED: 5 flow" in said[0] and STALLED.value() == 1
    worker.progress.done("flow", 5, stored=5)
    worker.check_stall()
    assert "processing again" in said[1] and STALLED.value() == 0
    rows = [b for b in worker.store.batches if b.type is wire.EMERGENCY]
    assert [int(b.columns["active"][0]) for b in rows] == [1, 0]
    assert {str(b.columns["kind"][0]) for b in rows} == {"worker_stalled"}
    assert {str(b.columns["sensor_id"][0]) for b in rows} == {"w1"}
    assert len({str(b.columns["emergency_id"][0]) for b in rows}) == 1  # cleared under the id it was raised


class _Service:
    """The Faust service's place in the graph, without a broker."""

    failed = None

    async def start(self) -> None:
        pass

    async def stop(self, wait_for_streams: bool = True) -> None:
        pass


class _NoBroker(StreamWorker):
    def _build(self):  # type: ignore[override]  # the graph with a stand-in for the Faust service
        super()._build()
        self.service = _Service()  # type: ignore[assignment]  # no broker in this test
        return self.service


def test_the_builder_starts_and_stops_the_soc_pieces_for_both_commands(tmp_path) -> None:
    import asyncio
    import urllib.error
    import urllib.request

    from finsa.streams.broker import free_port

    said: list[str] = []
    plan = WorkerPlan(WorkerSettings("127.0.0.1:9"), data_dir=tmp_path / "store", web=("127.0.0.1", free_port()),
                      say=said.append, clickhouse_http=free_port(), http_dir=tmp_path,
                      demo_institutions=["bank-a", "_sector"])
    worker = _NoBroker(plan)

    async def run() -> str:
        try:  # stopped whatever happens: an open chdb store would keep every later test from opening one
            await worker.start()
            assert worker.feedback is not None and worker.feedback._thread.is_alive()
            return worker.clickhouse_http.url
        finally:
            await worker.stop()

    url = asyncio.run(run())
    logins = [line for line in said if line.startswith("finsa: login (this run only)")]
    assert [line.split()[6].rstrip(",") for line in logins] == ["regulator", "operator", "analyst-bank-a"]
    assert any("ClickHouse HTTP" in line and "finsa_bank-a" in line and "_sector" not in line for line in said)
    assert (tmp_path / "keys" / "clickhouse-http" / "finsa_bank-a.password").exists()
    assert not worker.feedback._thread.is_alive()  # stopped with the rest of the graph
    try:
        urllib.request.urlopen(url + "/?query=SELECT%201", timeout=5)
        raise AssertionError("the ClickHouse HTTP interface still answers after stop()")
    except urllib.error.URLError:
        pass


def test_the_web_view_learns_each_institutions_agent_from_the_registry(tmp_path) -> None:
    import asyncio

    from finsa.dashboards.soc.routes import _CTX
    from finsa.dashboards.users import User
    from finsa.streams.broker import free_port

    registry = tmp_path / "institutions.toml"
    registry.write_text('[[institution]]\nid = "bank-a"\nname = "A"\nsubsector = "bank"\n'
                        'agent_url = "http://127.0.0.1:9465/"\n'
                        '[[institution]]\nid = "bank-b"\nname = "B"\nsubsector = "bank"\n')
    worker = StreamWorker(WorkerPlan(WorkerSettings("127.0.0.1:9"), registry=registry, web=("127.0.0.1", free_port()),
                                     say=lambda line: None))
    worker.store = MemoryStore()

    async def run() -> list:
        await worker._start_web(worker.plan.web)
        try:
            agents = worker.runner.app[_CTX]["agents"]
            return [agents.for_user(User.model_construct(username="x", role="institution", institution=i))
                    for i in ("bank-a", "bank-b")]
        finally:
            await worker.runner.cleanup()

    assert asyncio.run(run()) == ["http://127.0.0.1:9465", None]
