"""``python -m bench pipeline``: the whole embedded pipeline in one run, at increasing offered rates.

Real captures (``../shared/data/flows`` and ``attacks``) are metered, pseudonymised and signed by
an agent process (:mod:`bench.pipeline_agent`; ``--agents N``: N of them, each metering a share of
the institutions, as each institution runs its own), published to the Tansu broker (its own process),
and consumed by a stream worker in this process built from finsa's public pieces as ``finsa
worker --registry`` builds one: every default detector (told the institutions' subsectors), ARP
bindings, signature checks, the sector stage (alerts -> campaigns, warnings, levels), a chdb store
on disk. Per offered rate it prints:

- flows/s sustained: flows stored / wall seconds from the first send until the last flow is
  stored (or 60 s after the agent stopped), and flows stored per CPU second of the three
  processes together (agent, broker, worker; ``/proc/<pid>/stat``). The wall figure includes the
  drain: the last flows wait for the worker's held flow write (up to ~5 s), so a 30 s run cannot
  show more than ~85% of the offered rate however fast the worker is. Also printed, the steady
  rate: the slope of flows stored against time between ``STEADY_SKIP_S`` after the first send and
  the last send (:func:`steady_rate`), and the backlog when the agents stopped -- a worker that
  keeps up stores at the offered rate there and its backlog is the same at every offered rate in
  seconds of traffic;
- p50/p99 from a flow's end (the moment the agent hands its batch to the producer, see
  :mod:`bench.pipeline_agent`) to queryable (right after the store write), and from the end of
  the traffic an alert is about (``time_ms``) to the alert stored;
- the CPU share of each stage (:mod:`bench.pipeline_stages`).

``--quick`` offers 2,000 flows/s for 5 s from the smaller captures (a smoke test).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.pipeline_stages import (Stages, TimedEngine, TimedProcessor, TimedSectorStage, TimedStore, child_pids,
                                   process_cpu_s, worker_shares)
from bench.kafka_counts import KafkaCounts
from bench.report import grid
from bench.soak import worker_overrides
from bench.thread_cpu import GcSeconds, ThreadCpu
from finsa.metrics import REGISTRY

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
INSTITUTIONS = [("bank-a", "bank"), ("bank-b", "bank"), ("sec-c", "securities"), ("ins-d", "insurance"),
                ("pay-e", "payment"), ("exch-f", "exchange"), ("bank-g", "bank"), ("ins-h", "insurance")]
QUICK_BYTES = 400_000
#: Agent processes by default (``--agents``): each meters a share of the institutions, as each
#: institution of a sector runs its own agent. One: on 2 cores one agent sent all of 100k flows/s
#: offered, and a second gave no wall gain for 0.05 CPU s more per 100k flows (its own interpreter).
AGENTS = 1


def captures(quick: bool, data: Path = DATA) -> list[str]:
    """Every pcap/pcapng of ``flows`` and ``attacks`` (quick: those under 400 kB), by name."""
    found = sorted(p for sub in ("flows", "attacks") for p in (data / sub).rglob("*")
                   if p.suffix in (".pcap", ".pcapng") and p.is_file())
    if quick:
        found = [p for p in found if p.stat().st_size < QUICK_BYTES]
    return [str(p) for p in found]


def _registry(path: Path) -> Path:
    lines = []
    for i, (inst, subsector) in enumerate(INSTITUTIONS):
        lines += ["[[institution]]", f'id = "{inst}"', f'name = "{inst}"', f'subsector = "{subsector}"',
                  f'networks = ["10.{i}.0.0/16"]', ""]
    path.write_text("\n".join(lines))
    return path


def agent_overrides(text: str | None = None) -> dict:
    """``FINSA_PIPELINE_AGENT``: ``batch_rows=N,coalesce=0|1,compress=0|1`` for the bench agent.

    >>> agent_overrides("batch_rows=10000, coalesce=1")
    {'batch_rows': 10000, 'coalesce': True}
    """
    text = os.environ.get("FINSA_PIPELINE_AGENT", "") if text is None else text
    out: dict = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, _, value = (part.strip() for part in item.partition("="))
        if name not in ("batch_rows", "coalesce", "compress"):
            raise SystemExit(f"FINSA_PIPELINE_AGENT: {name!r} is not batch_rows, coalesce or compress")
        out[name] = int(value) if name == "batch_rows" else value not in ("0", "false", "")
    return out


def agent_groups(institutions: list[str], agents: int) -> list[list[str]]:
    """The institutions each of ``agents`` agent processes meters (round robin; none left empty).

    >>> agent_groups(["a", "b", "c", "d", "e"], 2)
    [['a', 'c', 'e'], ['b', 'd']]
    """
    agents = max(1, min(agents, len(institutions)))
    return [institutions[k::agents] for k in range(agents)]


def _start_agent(bootstrap: str, rate: float, seconds: float, quick: bool, institutions: list[str]) -> subprocess.Popen:
    """An agent process metering ``institutions`` at ``rate`` flows/s; it starts sending when told
    (:func:`_go`), so that several agents start together."""
    args = {"bootstrap": bootstrap, "rate": rate, "seconds": seconds, "captures": captures(quick),
            "institutions": institutions, "sign_keys": {i: _KEYS[i].hex() for i in institutions},
            "pseudo_keys": {i: secrets.token_hex(32) for i in institutions}, "wait_for_go": True,
            **agent_overrides()}
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty agent never blocks on it
    agent = subprocess.Popen([sys.executable, "-m", "bench.pipeline_agent"], cwd=root, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=errors, text=True)
    agent.errors = errors  # type: ignore[attr-defined]  # read back when it fails
    agent.stdin.write(json.dumps(args) + "\n")
    agent.stdin.flush()
    return agent


def _failed(agent: subprocess.Popen) -> RuntimeError:
    agent.errors.seek(0)  # type: ignore[attr-defined]  # set by _start_agent
    return RuntimeError(f"bench agent failed: {agent.errors.read()[-2000:].decode(errors='replace')}")  # type: ignore[attr-defined]  # set by _start_agent


async def _go(agents: list[subprocess.Popen]) -> None:
    """Wait until every agent is ready (imports, meters, producer built), then start them all."""
    for agent in agents:
        if (await asyncio.to_thread(agent.stdout.readline)).strip() != "ready":
            raise _failed(agent)
    for agent in agents:
        agent.stdin.write("go\n")
        agent.stdin.close()


def combine(results: list[dict]) -> dict:
    """One result of several agents: counts and CPU summed, the earliest start, the longest send.

    >>> combine([{"sent": 2, "cpu_s": 1.0, "start_unix_s": 5.0, "send_s": 3.0},
    ...          {"sent": 3, "cpu_s": 0.5, "start_unix_s": 4.0, "send_s": 2.0}])["sent"]
    5
    """
    out = {k: sum(r[k] for r in results) for k in results[0] if k not in ("start_unix_s", "send_s")}
    out.update(start_unix_s=min(r["start_unix_s"] for r in results), send_s=max(r["send_s"] for r in results),
               agents=[{"sent": r["sent"], "cpu_s": r["cpu_s"], "send_s": r["send_s"]} for r in results])
    return out


_KEYS = {inst: secrets.token_bytes(32) for inst, _ in INSTITUTIONS}
_SERVICE_KEY = secrets.token_bytes(32)


def _worker(tmp: Path, bootstrap: str, stages: Stages, flow_ms: list, alert_ms: list, stored_at: list):
    """The store, the sector stage and the stream service of one worker (inert until started)."""
    from finsa.app.offline import make_engine
    from finsa.batchauth import SERVICE_SIGNER, BatchVerifier
    from finsa.institutions import load_registry
    from finsa.sector.picture import SectorPicture
    from finsa.storage.backend import open_store
    from finsa.streams.faust_app import WorkerSettings
    from finsa.streams.sector_stage import feed_intel
    from finsa.streams.service import StreamService

    registry = _registry(tmp / "institutions.toml")
    store = open_store(data_dir=tmp / "store")
    store.migrate()
    store.load_institutions(load_registry(registry))
    engine = make_engine(None, registry)
    TimedSectorStage.stages = TimedProcessor.stages = stages
    # as `finsa run` and `finsa worker --batch-keys` build them: the institutions' keys and the
    # workers' own (``_sector``), with which the worker signs its alert batches and the sector stage
    # knows them as stored already (the bench's sector stage re-stored every one up to session 5)
    verifier = BatchVerifier({**_KEYS, SERVICE_SIGNER: _SERVICE_KEY})
    sector = TimedSectorStage(SectorPicture.from_files(registry), TimedStore(store, stages, "sector store"),
                              [feed_intel(engine)], verifier=verifier)

    def queryable(flows) -> None:
        now = time.time()
        flow_ms.append(int(now * 1000) - np.asarray(flows.columns["last_seen_ms"]))
        stored_at.append((now, len(flows)))

    processor = TimedProcessor(TimedStore(store, stages, "store", alert_ms), TimedEngine(engine, stages),
                               verifier=verifier, flow_observers=[sector.observe_flows, queryable])
    settings = WorkerSettings(bootstrap, app_id="bench-pipeline", datadir=tmp / "faust", session_timeout_s=4,
                              **worker_overrides(os.environ.get("FINSA_PIPELINE_WORKER", "")))
    return store, StreamService(settings, processor, sector)


STEADY_SKIP_S = 10.0


def steady_rate(events: list[tuple[float, int]], start: float, stop: float) -> float:
    """Flows stored per second between ``start`` and ``stop``: the least-squares slope of the
    cumulative count at each store write (``events``: (unix s, flows) per write), nan under 3 writes.

    >>> round(steady_rate([(t, 1000) for t in range(0, 40, 2)], 10, 30))
    500
    >>> steady_rate([(11.0, 5), (12.0, 5)], 10, 30)
    nan
    """
    times = np.array([t for t, _ in events], dtype=float)
    counts = np.cumsum([n for _, n in events], dtype=float)
    inside = (times >= start) & (times <= stop)
    if inside.sum() < 3:
        return float("nan")
    return float(np.polyfit(times[inside], counts[inside], 1)[0])


def measure(rate: float, seconds: float, quick: bool = False, agents: int = 1) -> dict:
    """Offer ``rate`` flows/s for ``seconds`` through the whole pipeline, from ``agents`` agent
    processes (each metering a share of the institutions, at its share of the rate); what it did."""
    from finsa.app.run import topic_partitions
    from finsa.kafka import ensure_topics
    from finsa.streams.broker import EmbeddedBroker

    stages, flow_ms, alert_ms, stored_at = Stages(), [], [], []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        broker_pid = child_pids()[0]
        ensure_topics(broker.bootstrap, topic_partitions(4))
        store, service = _worker(Path(tmp), broker.bootstrap, stages, flow_ms, alert_ms, stored_at)
        result: dict = {}

        async def main() -> None:
            await service.start()
            await asyncio.sleep(5)  # consumer-group join
            stages.seconds.clear()
            stages.counts.clear()
            cpu0, broker0 = process_cpu_s(), process_cpu_s(broker_pid)
            result["returned0"] = REGISTRY.get("finsa_worker_memory_return_seconds_total").total()
            threads, gc_cpu, kafka = ThreadCpu().start(), GcSeconds().__enter__(), KafkaCounts().__enter__()
            groups = agent_groups([i for i, _ in INSTITUTIONS], agents)
            procs = [_start_agent(broker.bootstrap, rate * len(g) / len(INSTITUTIONS), seconds, quick, g) for g in groups]
            try:
                await _go(procs)
                while any(agent.poll() is None for agent in procs):
                    await asyncio.sleep(0.2)
            finally:  # one agent failed (not ready, or the wait was cancelled): the others go with it
                for agent in procs:
                    if agent.poll() is None:
                        agent.kill()
            outs = [agent.stdout.read() for agent in procs]
            for agent in procs:
                if agent.returncode != 0:
                    raise _failed(agent)
            result.update(combine([json.loads(out.strip().splitlines()[-1]) for out in outs]))
            deadline = time.monotonic() + 60
            while sum(map(len, flow_ms)) < result["sent"] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            result.update(wall_s=time.time() - result["start_unix_s"], worker_cpu_s=process_cpu_s() - cpu0,
                          broker_cpu_s=process_cpu_s(broker_pid) - broker0,
                          threads=threads.stop(), engine_cpu_s=threads.engine_s, gc_s=list(gc_cpu.seconds),
                          gc_n=list(gc_cpu.collections))
            gc_cpu.__exit__()
            result["worker_cpu_s"] -= result["threads"].pop("bench-thread-cpu", 0.0)  # the sampler itself
            kafka.__exit__()
            result.update(fetches=kafka.fetches, record_sets=kafka.record_sets, fetched_bytes=kafka.fetched_bytes,
                          commits=kafka.commits)
            await asyncio.sleep(2.0)  # the sector stage's last alert messages (taken within 1 s)
            await service.stop()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if others:  # Faust's own tasks finishing their stop (cancelled mid-way, one may loop)
                await asyncio.wait(others, timeout=15)

        asyncio.run(main())
        store.close()
    flows = np.concatenate(flow_ms) if flow_ms else np.zeros(0)
    alerts = np.concatenate(alert_ms) if alert_ms else np.zeros(0)
    result.update(sector_parts={**{k: v for k, v in stages.seconds.items() if k.startswith("_sector_")},
                                "_sector_writes": stages.seconds.get("sector store", 0.0)},
                  memory_return_s=REGISTRY.get("finsa_worker_memory_return_seconds_total").total() - result.pop("returned0"))
    start, stop = result["start_unix_s"], result["start_unix_s"] + result["send_s"]
    result.update(steady=steady_rate(stored_at, start + min(STEADY_SKIP_S, result["send_s"] / 3), stop),
                  backlog=result["sent"] - sum(n for t, n in stored_at if t <= stop))
    result.update(stored=len(flows), alerts=len(alerts), stages=worker_shares(stages, result["worker_cpu_s"], result["engine_cpu_s"]),
                  writes={k: v / result["wall_s"] for k, v in sorted(stages.counts.items())},
                  flow_p=_percentiles(flows), alert_p=_percentiles(alerts))
    return result


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    if not len(values):
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _cpu_split(r: dict) -> dict[str, float]:
    split = {"agent: metering": r["meter_cpu_s"], "agent: pseudonymise+sign+produce": r["cpu_s"] - r["meter_cpu_s"],
             "broker (Tansu)": r["broker_cpu_s"], **r["stages"]}
    return split


def _layer_line(rate: float, r: dict) -> str:
    """Messages, fetches and commits per second, and the worker's CPU by thread, for one rate."""
    wall, messages = r["wall_s"], max(r.get("flow_messages", 0), 1)
    threads = sorted(r.get("threads", {}).items(), key=lambda kv: -kv[1])
    return (f"{rate:,.0f}: {r.get('flow_messages', 0) / wall:,.0f} flow messages/s ({r['sent'] / messages:,.0f} flows "
            f"each), {r.get('fetches', 0) / wall:.1f} fetches/s, {r.get('record_sets', 0) / wall:.1f} record sets/s "
            f"({r.get('fetched_bytes', 0) / max(r.get('record_sets', 0), 1) / 1024:,.0f} KiB each), "
            f"{r.get('commits', 0) / wall:.2f} commits/s; GC {sum(r.get('gc_s', [])):.2f} s "
            f"(gen0/1/2 {'/'.join(str(n) for n in r.get('gc_n', []))} collections, "
            f"{'/'.join(f'{s:.2f}' for s in r.get('gc_s', []))} s); sector: "
            + ", ".join(f"{k[8:]} {v:.2f} s" for k, v in sorted(r.get("sector_parts", {}).items()))
            + f"; memory return {r.get('memory_return_s', 0.0):.2f} s wall\n    " + _agents_text(r) + "\n    worker "
            f"{r['worker_cpu_s']:.1f} CPU s: " + ", ".join(f"{name} {cpu:.2f}" for name, cpu in threads if cpu >= 0.05))


def _agents_text(r: dict) -> str:
    """Each agent process's flows, send time and CPU; the agents' CPU per 100k flows by part."""
    per = 1e5 / max(r["sent"], 1)
    return (f"{len(r['agents'])} agent(s): " + ", ".join(
        f"{a['sent']:,} flows in {a['send_s']:.1f} s, {a['cpu_s']:.1f} CPU s" for a in r["agents"])
        + f"; per 100k flows {r['meter_cpu_s'] * per:.3f} CPU s metering, "
        f"{(r['cpu_s'] - r['meter_cpu_s']) * per:.3f} pseudonymise+sign+produce")


def tables(results: list[tuple[float, dict]], seconds: float, agents: int = 1) -> list[str]:
    rows, shares, writes, layer = [], [], [], []
    for rate, r in results:
        split = _cpu_split(r)
        total = sum(split.values())
        rows.append([f"{rate:,.0f}", f"{r['sent']:,}", f"{r['stored']:,}", f"{r['stored'] / r['wall_s']:,.0f}",
                     f"{r['steady']:,.0f}", f"{r['backlog']:,} ({r['backlog'] / rate:.1f} s)",
                     f"{r['stored'] / max(total, 1e-9):,.0f}", f"{total:,.1f}", f"{r['flow_p'][0]:,.0f}",
                     f"{r['flow_p'][1]:,.0f}", f"{r['alerts']:,}", f"{r['alert_p'][0]:,.0f}",
                     f"{r['alert_p'][1]:,.0f}"])
        shares.append([f"{rate:,.0f}"] + [f"{100 * v / max(total, 1e-9):.0f}%" for v in split.values()])
        writes.append(f"{rate:,.0f}: " + ", ".join(f"{k} {v:.1f}/s" for k, v in r["writes"].items()))
        layer.append(_layer_line(rate, r))
    head = ["offered flows/s", "sent", "stored", "flows/s wall", "flows/s steady", "backlog at last send", "flows per CPU s", "CPU s (all)",
            "flow->queryable p50 ms", "p99 ms", "alerts", "flow->alert p50 ms", "p99 ms"]
    names = list(_cpu_split(results[0][1]).keys()) if results else []
    return [f"pipeline: real captures -> {agents} agent process(es) (meter, pseudonymise, sign) -> Tansu -> worker "
            f"(all detectors, ARP, signatures, sector stage) -> chdb, {seconds:.0f} s per rate\n" + grid(head, rows),
            "pipeline: CPU share per stage (of all the processes)\n" + grid(["offered flows/s"] + names, shares),
            "pipeline: worker store writes per second, by record type\n" + "\n".join(writes),
            "pipeline: the worker's Kafka layer and threads (CPU s of the worker process by thread, ended "
            "threads included; GC = thread CPU in cyclic collections, inside the threads' figures)\n"
            + "\n".join(layer)]


def run(quick: bool, rates: tuple[float, ...] | None = None, agents: int | None = None,
        seconds: float | None = None) -> list[str]:
    agents = agents or AGENTS
    seconds = seconds or (5.0 if quick else 30.0)
    rates = rates or ((2_000,) if quick else (10_000, 25_000, 50_000, 100_000))
    return tables([(rate, measure(rate, seconds, quick, agents)) for rate in rates], seconds, agents)
