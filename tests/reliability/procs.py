"""Real finsa processes for fault injection: workers, agents, an S3 server, and what they did.

Every component runs as its own OS process, as deployed, so a fault is a real one: SIGKILL, a
broker that goes away, a full file system. The chdb store is opened by one process at a time
(the worker while it runs, :func:`query_store` after it stopped), never by the test process.

* :class:`Proc`: a subprocess with its output in a log file; ``kill()`` is SIGKILL, ``stop()``
  SIGTERM then wait;
* :func:`start_worker` / :func:`start_agent`: ``finsa worker`` / ``finsa collect --config``;
* :class:`MotoS3`: ``moto_server`` on loopback with a bucket, for Tansu's ``s3://`` engine;
* :func:`lag`: how many flow messages the worker group has not committed (a worker commits an
  offset only after the message's rows were stored), :func:`wait_caught_up` polls it to 0;
  :func:`topic_ends` finds where the topic ends, :func:`table_parts` whether the store wrote;
* :func:`query_store`: SQL on a stopped worker's store, in a fresh process (:mod:`store_query`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from finsa import wire
from finsa.streams.broker import free_port

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
WORKER_GROUP = "finsa-worker"
_PART = re.compile(r"^[0-9A-Za-z-]+_\d+_\d+_\d+(_\d+)?$")  # MergeTree part: partition_min_max_level
SESSION_TIMEOUT_S = "6"


class Proc:
    """A child process whose output goes to ``log_path``."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv, self.log_path = argv, log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      cwd=REPO, env={**os.environ, **(env or {})}, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        self._log.close()

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); returns the exit code."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_worker(bootstrap: str, data_dir: Path, log_path: Path, fault_file: Path | None = None,
                 flags: tuple[str, ...] = ()) -> Proc:
    """``finsa worker`` on the embedded store (more ``flags`` appended); with ``fault_file`` the
    storage-fault harness runs it."""
    module = ["-m", "finsa.app.cli"] if fault_file is None else ["-m", "tests.reliability.faulty_worker"]
    argv = [PYTHON, *module, "worker", "--broker", bootstrap, "--data-dir", str(data_dir),
            "--state-dir", str(data_dir.parent / "faust-state"), "--session-timeout", SESSION_TIMEOUT_S,
            "--partitions", "2", "--app-id", WORKER_GROUP, *flags]
    env = {"FINSA_TEST_STORAGE_FAULT": str(fault_file)} if fault_file is not None else None
    return Proc(argv, log_path, env)


def start_agent(config_path: Path, log_path: Path) -> Proc:
    """``finsa collect --config FILE``."""
    return Proc([PYTHON, "-m", "finsa.app.cli", "collect", "--config", str(config_path)], log_path)


def query_store(data_dir: Path, sql: str, timeout_s: float = 60.0) -> list[dict]:
    """Rows of ``sql`` on the store in ``data_dir`` (read in a fresh process: chdb is one per folder)."""
    done = subprocess.run([PYTHON, "-m", "tests.reliability.store_query", str(data_dir), sql], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise AssertionError(f"store query failed: {done.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def committed(bootstrap: str, topic: str = wire.TOPICS["flows"], group: str = WORKER_GROUP,
              partitions: int = 2, timeout_s: float = 5.0) -> dict[int, int] | None:
    """{partition: committed offset} of the worker group (0 when none); None if the broker is away."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=timeout_s)
        return {tp.partition: max(tp.offset, 0) for tp in found}
    except KafkaException:
        return None
    finally:
        consumer.close()


def topic_ends(bootstrap: str, topic: str = wire.TOPICS["flows"], partitions: int = 2,
               idle_s: float = 2.0) -> dict[int, int]:
    """{partition: offset after the last message}, by reading the topic to its end.

    Tansu's ListOffsets answer is not the next offset (seen: the last one, or the last record
    batch's base offset), so the end is found by reading until ``idle_s`` passes without a message.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{time.time_ns()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    ends = {p: 0 for p in range(partitions)}
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            for msg in consumer.consume(1000, 0.2):
                if not msg.error():
                    ends[msg.partition()] = max(ends[msg.partition()], msg.offset() + 1)
                    last = time.monotonic()
    finally:
        consumer.close()
    return ends


def lag(bootstrap: str, ends: dict[int, int]) -> int | None:
    """Messages below ``ends`` the worker group has not committed; None if the broker is away."""
    done = committed(bootstrap, partitions=len(ends))
    if done is None:
        return None
    return sum(max(end - done.get(p, 0), 0) for p, end in ends.items())


def wait_caught_up(bootstrap: str, ends: dict[int, int], timeout_s: float, worker: Proc | None = None) -> bool:
    """Poll until the worker group committed every message below ``ends`` (so it was stored)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker is not None and not worker.alive:
            raise AssertionError(f"the worker exited ({worker.returncode}):\n{worker.log_tail()}")
        if lag(bootstrap, ends) == 0:
            return True
        time.sleep(0.25)
    return False


def table_parts(store: Path, table: str = "flows") -> int:
    """Data parts the chdb store has written for ``table`` (0 before its first insert)."""
    try:
        head = (store / "metadata" / "finsa" / f"{table}.sql").read_text().split("'")
    except OSError:
        return 0
    uuid = head[1] if len(head) > 1 else ""
    folder = store / "store" / uuid[:3] / uuid
    return sum(1 for p in folder.iterdir() if p.is_dir() and _PART.match(p.name)) if uuid and folder.is_dir() else 0


def metric(port: int, name: str, labels: str = "") -> float:
    """A value from an agent's /metrics endpoint (0 when absent)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def wait_metric(port: int, name: str, labels: str, at_least: float, timeout_s: float) -> float:
    deadline, value = time.monotonic() + timeout_s, 0.0
    while time.monotonic() < deadline:
        try:
            value = metric(port, name, labels)
        except OSError:
            value = 0.0
        if value >= at_least:
            return value
        time.sleep(0.1)
    return value


class MotoS3:
    """``moto_server`` on a free loopback port with one bucket; :attr:`env` is what Tansu needs."""

    def __init__(self, log_path: Path, bucket: str = "tansu") -> None:
        self.port, self.bucket, self.log_path = free_port(), bucket, log_path
        self.proc: Proc | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT": f"http://127.0.0.1:{self.port}", "AWS_ALLOW_HTTP": "true",
                "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self, timeout_s: float = 20.0) -> "MotoS3":
        binary = shutil.which("moto_server", path=str(Path(PYTHON).parent)) or shutil.which("moto_server")
        if binary is None:
            raise AssertionError("moto_server is not installed (pip install 'moto[server]')")
        self.proc = Proc([binary, "-H", "127.0.0.1", "-p", str(self.port)], self.log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{self.bucket}", method="PUT")
                urllib.request.urlopen(req, timeout=2).read()
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"moto_server did not start:\n{self.proc.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def udp_port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when something (the agent's flow-export listener) is bound to UDP ``port``."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_agent_ready(agent: Proc, listen_port: int, metrics_port: int, timeout_s: float = 30.0) -> None:
    """Until the agent serves metrics and listens for flow export."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not agent.alive:
            raise AssertionError(f"the agent exited ({agent.returncode}):\n{agent.log_tail()}")
        try:
            metric(metrics_port, "finsa_spool_depth_batches")
            if udp_port_taken(listen_port):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the agent did not get ready:\n{agent.log_tail()}")


def read_flows(bootstrap: str, partitions: int = 2, idle_s: float = 2.0) -> list[tuple[int, int, wire.RecordBatch]]:
    """Every (partition, offset, batch) of the flow topic, in partition then offset order."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = wire.TOPICS["flows"]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{time.time_ns()}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out, last = [], time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            for msg in consumer.consume(1000, 0.2):
                if not msg.error():
                    out.append((msg.partition(), msg.offset(), wire.decode_batch(msg.value())))
                    last = time.monotonic()
    finally:
        consumer.close()
    return sorted(out, key=lambda m: (m[0], m[1]))
