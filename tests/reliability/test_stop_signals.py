"""Stop signals, as a service manager sends them: every long-running finsa command drains and exits 0.

Each command is started in the background (its own session, as systemd or a shell script would),
signalled, and checked: exit code 0, an exit within a generous liveness bound (a hang check, not a
speed figure), no process of its left behind (the Tansu broker included), and every record the
broker acknowledged stored exactly once. SIGKILL of ``finsa run`` must not leave its broker behind.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from finsa.streams.broker import free_port
from tests.reliability.procs import (PYTHON, Proc, query_store, read_flows, start_agent, start_worker,
                                     table_parts, wait_agent_ready, wait_caught_up, wait_metric)
from tests.reliability.reconcile import stored_flows
from tests.reliability.report import Outcome
from tests.reliability.sources import RECORDS_PER_DATAGRAM, NetflowExporter, agent_config, flow_batches, publish

pytestmark = [pytest.mark.integration, pytest.mark.reliability, pytest.mark.timeout(180)]

LIVENESS_S = 60  # a process that has not exited this long after the signal hangs


def _state(pid: int) -> str | None:
    """The process's state letter (None when it is gone; Z is a zombie: dead, not yet reaped)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.split()[1]
    except OSError:
        return None
    return None


def _running(pid: int) -> bool:
    return _state(pid) not in (None, "Z")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent_of.items() if p in frontier]
        found += kids
        frontier = kids
    return found


def _wait_exit(proc: Proc, sig: signal.Signals) -> tuple[int | None, float]:
    """Send ``sig``; (exit code or None on a hang, seconds it took)."""
    t0 = time.monotonic()
    proc.popen.send_signal(sig)
    try:
        code = proc.popen.wait(LIVENESS_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None, time.monotonic() - t0
    return code, time.monotonic() - t0


def _wait_log(proc: Proc, pattern: str, timeout_s: float = 90) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, proc.log_path.read_text(errors="replace"))
        if found:
            return found
        assert proc.alive, f"exited ({proc.returncode}):\n{proc.log_tail()}"
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not seen:\n{proc.log_tail()}")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory) -> Path:
    from finsa.scenario.generator import generate_scenario

    folder = tmp_path_factory.mktemp("scenario")
    generate_scenario(folder, duration_s=40, scale=0.3, attack_set="basic")
    return folder


def _start_run(scenario: Path, data: Path, log: Path, *extra: str) -> Proc:
    return Proc([PYTHON, "-m", "finsa.app.cli", "run", "--scenario", str(scenario), "--data-dir", str(data),
                 "--port", str(free_port()), "--for", "600", *extra], log)


def test_finsa_run_drains_on_sigterm_and_leaves_no_process(scenario, tmp_path, reliability) -> None:
    data = tmp_path / "run"
    run = _start_run(scenario, data, tmp_path / "run.log", "--speed", "2")
    _wait_log(run, r"threat view at")
    deadline = time.monotonic() + 60
    while table_parts(data) == 0 and time.monotonic() < deadline:  # the worker is storing: stop mid-stream
        time.sleep(0.2)
    children = descendants(run.popen.pid)
    assert children, "finsa run started no broker"
    code, took_s = _wait_exit(run, signal.SIGTERM)
    assert code == 0, run.log_tail()
    assert not [pid for pid in children if _running(pid)], "a child of finsa run outlived it"
    drained = _wait_log(run, r"drained: flow (\d+) offered/(\d+) processed/(\d+) stored")
    offered, processed = int(drained.group(1)), int(drained.group(2))
    assert offered == processed > 0

    batches = query_store(data, "SELECT uniqExact(batch_id) AS ids FROM ingested_batches WHERE record = 'flow'")[0]
    final = stored_flows(data)
    reliability(Outcome("finsa run SIGTERM mid-replay (drain)", final.distinct_batch_flow, final.rows,
                        final.duplicates, offered - int(batches["ids"]), recovery_s=took_s))
    assert int(batches["ids"]) == offered  # every acknowledged flow batch stored
    assert final.rows == final.distinct_batch_flow  # and each flow once


def test_sigkill_of_finsa_run_leaves_no_broker(tmp_path) -> None:
    run = _start_run(tmp_path, tmp_path / "run", tmp_path / "run.log", "--no-replay")
    _wait_log(run, r"broker \(Tansu\) on")
    children = descendants(run.popen.pid)
    assert children
    run.kill()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _running(pid)], "the broker outlived a SIGKILLed finsa run"


def test_finsa_worker_drains_on_sigint_then_a_restart_stores_the_rest_once(broker, tmp_path, reliability) -> None:
    batches = flow_batches(120, 200)
    ends = publish(broker.bootstrap, batches)
    store = tmp_path / "store"
    worker = start_worker(broker.bootstrap, store, tmp_path / "worker1.log")
    deadline = time.monotonic() + 60
    while table_parts(store) == 0 and time.monotonic() < deadline:
        assert worker.alive, worker.log_tail()
        time.sleep(0.05)
    code, took_s = _wait_exit(worker, signal.SIGINT)
    assert code == 0, worker.log_tail()
    _wait_log(worker, r"finsa worker: (drained|drain cut short)")
    first = stored_flows(store)
    assert first.rows == first.distinct_batch_flow  # what it stored before stopping, once

    worker = start_worker(broker.bootstrap, store, tmp_path / "worker2.log")
    _wait_log(worker, r"finsa worker: consuming from")
    try:
        assert wait_caught_up(broker.bootstrap, ends, timeout_s=60, worker=worker), worker.log_tail()
    finally:
        code2, _ = _wait_exit(worker, signal.SIGTERM)
    assert code2 == 0, worker.log_tail()
    final = stored_flows(store)
    reliability(Outcome("finsa worker SIGINT mid-stream, restarted", len(batches) * 200, final.rows,
                        final.duplicates, len(batches) * 200 - final.distinct_natural, recovery_s=took_s))
    assert final.rows == final.distinct_batch_flow == final.distinct_natural == len(batches) * 200


def test_finsa_collect_drains_its_spool_on_sigterm(broker, tmp_path, reliability) -> None:
    listen, metrics = free_port(), free_port()
    config = agent_config(tmp_path / "agent", broker.bootstrap, listen, metrics)
    agent = start_agent(config, tmp_path / "agent.log")
    exporter = NetflowExporter(listen)
    try:
        wait_agent_ready(agent, listen, metrics)
        exporter.send(30, pause_s=0.005)
        wait_metric(metrics, "finsa_agent_flows_total", 'outcome="spooled"', 30 * RECORDS_PER_DATAGRAM, 20)
        children = descendants(agent.popen.pid)
        code, took_s = _wait_exit(agent, signal.SIGTERM)
    finally:
        exporter.close()
    assert code == 0, agent.log_tail()
    assert not [pid for pid in children if _running(pid)]
    assert "0 batches left in the spool" in agent.log_path.read_text(), agent.log_tail()
    rows: dict[tuple, int] = {}
    for _, _, batch in read_flows(broker.bootstrap):
        for key in zip(batch.columns["src_port"].tolist(), batch.columns["dst_port"].tolist()):
            rows[key] = rows.get(key, 0) + 1
    reliability(Outcome("finsa collect SIGTERM (spool drained to the broker)", exporter.records, sum(rows.values()),
                        sum(n - 1 for n in rows.values()), exporter.records - len(rows), recovery_s=took_s))
    assert len(rows) == exporter.records and set(rows.values()) == {1}


def test_a_second_signal_stops_finsa_run_at_once(scenario, tmp_path) -> None:
    data = tmp_path / "run"
    run = _start_run(scenario, data, tmp_path / "run.log", "--speed", "2")
    _wait_log(run, r"threat view at")
    deadline = time.monotonic() + 60
    while table_parts(data) == 0 and time.monotonic() < deadline:  # data in flight
        time.sleep(0.2)
    children = descendants(run.popen.pid)
    run.popen.send_signal(signal.SIGINT)
    time.sleep(0.3)  # stopping takes seconds (the Faust worker alone): this lands while it drains
    code, _ = _wait_exit(run, signal.SIGINT)
    assert code == 0, run.log_tail()
    log = run.log_path.read_text()
    assert "SIGINT: draining" in log and "SIGINT again: stopping now" in log, run.log_tail()
    assert not [pid for pid in children if _running(pid)]
    final = stored_flows(data)
    assert final.rows == final.distinct_batch_flow  # what was stored, once
