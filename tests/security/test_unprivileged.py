"""finsa runs without root: ``finsa flows``, the worker and ``finsa query`` as ``nobody`` with no
capabilities; live capture needs exactly CAP_NET_RAW (refused without it, works with only it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from finsa import wire
from finsa.kafka import ensure_topics, producer_config
from tests.collectors.agent.agent_helpers import flow_batch
from tests.conftest import need_tool, shared_data
from tests.readable_install import nobody_python
from tests.security.conftest import needs_broker, quiet

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")]
NOBODY = 65534


@pytest.fixture
def home() -> Path:
    """A directory nobody owns (pytest's tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="finsa-nobody-"))
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody(home: Path, *caps: str) -> list[str]:
    """Command prefix: uid/gid nobody, no groups, only ``caps`` (e.g. "net_raw"), then this venv's
    packages on an interpreter nobody may run, read from a copy nobody may read when the clone sits
    in a folder nobody may enter (:mod:`tests.readable_install`); what follows is ``-m module args``
    or ``-c code``."""
    need_tool("setpriv")
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if caps:
        wanted = ",".join(f"+{c}" for c in caps)
        prefix += [f"--inh-caps={wanted}", f"--ambient-caps={wanted}"]
    else:
        prefix += ["--inh-caps=-all"]
    return [*prefix, *nobody_python(home)]


def _run(home: Path, args: list[str], *caps: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*_as_nobody(home, *caps), *args], capture_output=True, text=True, timeout=timeout_s,
                          cwd=home)


def test_the_unprivileged_process_really_has_no_capabilities(home) -> None:
    done = _run(home, ["-c", "import os;print(os.geteuid(), open('/proc/self/status').read())"])
    assert done.returncode == 0, done.stderr
    status = dict(line.split(":\t") for line in done.stdout.splitlines()[1:] if ":\t" in line)
    assert done.stdout.split()[0] == str(NOBODY)
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0


def test_flows_runs_as_nobody(home) -> None:
    pcap = home / "capture.pcap"
    shutil.copy(shared_data("flows/nfstream") / "google_ssl.pcap", pcap)
    done = _run(home, ["-m", "finsa.app.cli", "flows", str(pcap), "--format", "csv", "-o", str(home / "out.csv")])
    assert done.returncode == 0, done.stderr
    assert len((home / "out.csv").read_text().splitlines()) > 1


@needs_broker
def test_worker_and_query_run_as_nobody(home) -> None:
    from confluent_kafka import Producer

    from finsa.streams.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, {wire.TOPICS["flows"]: 1, wire.TOPICS["alerts"]: 1, wire.TOPICS["dlq"]: 1})
        producer = Producer(quiet(producer_config(broker.bootstrap, "t")))
        producer.produce(wire.TOPICS["flows"], wire.encode_batch(flow_batch(1, rows=7)), partition=0)
        producer.produce(wire.TOPICS["flows"], b"not a batch", partition=0)  # dead-lettered after the batch
        assert producer.flush(10) == 0
        worker = subprocess.Popen(
            [*_as_nobody(home), "-m", "finsa.app.cli", "worker", "--broker", broker.bootstrap, "--data-dir",
             str(home / "store"), "--state-dir", str(home / "faust"), "--partitions", "1", "--session-timeout", "4"],
            cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        dead = None
        try:
            dead = _first_dead_letter(broker.bootstrap, worker)
        finally:  # a running worker stops on SIGTERM; one that never got going is killed
            worker.send_signal(signal.SIGTERM if dead is not None else signal.SIGKILL)
            try:
                _, err = worker.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                _, err = worker.communicate()
    assert dead == b"not a batch", err
    assert worker.returncode == 0, err
    assert (home / "store").stat().st_uid == NOBODY
    done = _run(home, ["-m", "finsa.app.cli", "query", "--data-dir", str(home / "store"), "--format", "csv",
                       "SELECT count() FROM flows"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "7"


def _first_dead_letter(bootstrap: str, worker: subprocess.Popen) -> bytes | None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(quiet({"bootstrap.servers": bootstrap, "group.id": f"t-{time.time_ns()}"}))
    consumer.assign([TopicPartition(wire.TOPICS["dlq"], 0, OFFSET_BEGINNING)])
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and worker.poll() is None:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                return msg.value()
    finally:
        consumer.close()
    return None


_CAPTURE = """
from finsa.collectors.live.capture import LiveCapture
from finsa.errors import CaptureError
try:
    LiveCapture("lo", block_size=1 << 20, block_count=2).start().stop()
    print("captured")
except CaptureError as exc:
    print("refused:", exc)
"""


def test_live_capture_needs_exactly_cap_net_raw(home) -> None:
    without = _run(home, ["-c", _CAPTURE])
    assert without.returncode == 0, without.stderr
    assert without.stdout.startswith("refused:")
    with_raw = _run(home, ["-c", _CAPTURE], "net_raw")
    assert with_raw.returncode == 0, with_raw.stderr
    assert with_raw.stdout.strip() == "captured"
