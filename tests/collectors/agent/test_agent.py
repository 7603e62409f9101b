"""The agent's data path without a broker: pseudonymise, split, spool, refuse when full."""

from __future__ import annotations

from finsa import wire
from finsa.collectors.agent.agent import FLOWS, Agent
from finsa.collectors.agent.config import load_agent_config
from finsa.collectors.agent.pseudonym import Pseudonymiser
from finsa.collectors.agent.spool_sender import unpack_spooled
from finsa.streams.broker import free_port
from tests.collectors.agent.agent_helpers import KEY_HEX, flow_batch, write_config


def _agent(tmp_path, extra: str = "", spool: str = "") -> Agent:
    path = write_config(tmp_path, f"127.0.0.1:{free_port()}", extra=extra)  # nobody listens there
    if spool:
        path.write_text(path.read_text() + spool)
    return Agent(load_agent_config(path), path, retry_s=0.2)


def _spooled(agent: Agent) -> list[tuple[bytes, wire.RecordBatch, str]]:
    out = []
    for entry in agent.spool.entries():
        key, encoded, topic, rows = unpack_spooled(agent.spool.read(entry))
        batch = wire.decode_batch(encoded)
        assert rows == len(batch) and batch.batch_id == entry.batch_id
        out.append((key, batch, topic))
    return out


def test_batches_are_pseudonymised_before_they_reach_the_spool(tmp_path) -> None:
    agent = _agent(tmp_path).start(sources=False)
    try:
        batch = flow_batch(7)
        assert agent.submit(batch) == 1
        ((key, spooled, topic),) = _spooled(agent)
    finally:
        agent.stop()
    assert key == b"bank-a" and topic == wire.TOPICS["flows"] and spooled.batch_id == batch.batch_id
    expect = Pseudonymiser(bytes.fromhex(KEY_HEX), ["10.0.0.0/8"]).apply(batch.columns["src_ip"])
    assert (spooled.columns["src_ip"] == expect).all()
    assert (spooled.columns["dst_ip"] == batch.columns["dst_ip"]).all()
    sent, clear = (wire.ips_to_strings(spooled.columns["src_ip"]), wire.ips_to_strings(batch.columns["src_ip"]))
    assert all(ip.startswith("10.") for ip in sent) and sent != clear  # other hosts of the same network
    assert (spooled.columns["flow_id"] == batch.columns["flow_id"]).all()


def test_batches_are_compressed_unless_turned_off_and_decode_the_same(tmp_path) -> None:
    flags = {}
    for name, extra in (("default", ""), ("off", "compress_batches = false")):
        (tmp_path / name).mkdir()
        agent = _agent(tmp_path / name, extra=extra).start(sources=False)
        try:
            agent.submit(flow_batch(5, rows=300))
            entry = next(iter(agent.spool.entries()))
            encoded = unpack_spooled(agent.spool.read(entry))[1]
            ((_, spooled, _),) = _spooled(agent)
        finally:
            agent.stop()
        flags[name] = encoded[7] & wire.FLAG_ZLIB  # the header's flags byte
        assert len(spooled) == 300
    assert flags == {"default": wire.FLAG_ZLIB, "off": 0}


def test_large_batches_are_split_and_a_full_spool_refuses_with_a_count(tmp_path) -> None:
    agent = _agent(tmp_path, extra="max_batch_rows = 8", spool="max_batches = 4\n").start(sources=False)
    dropped_before = FLOWS.value(outcome="dropped")
    try:
        assert agent.submit(flow_batch(1, rows=20)) == 3  # 8 + 8 + 4
        assert agent.submit(flow_batch(2, rows=8)) == 1
        assert agent.submit(flow_batch(3, rows=8)) == 0  # the spool holds 4 batches: refused
        rows = [len(b) for _, b, _ in _spooled(agent)]
    finally:
        agent.stop()
    assert rows == [8, 8, 4, 8]
    assert agent.totals["dropped_batches"] == 1 and FLOWS.value(outcome="dropped") == dropped_before + 8
    assert agent.heartbeat().rows()[0]["spool_batches"] == 4


def test_without_internal_networks_nothing_is_changed(tmp_path) -> None:
    path = write_config(tmp_path, f"127.0.0.1:{free_port()}")
    text = "\n".join(line for line in path.read_text().splitlines()
                     if not line.startswith(("internal_networks", "pseudonymisation_key_file")))
    path.write_text(text)
    agent = Agent(load_agent_config(path), retry_s=0.2).start(sources=False)
    try:
        batch = flow_batch(4)
        agent.submit(batch)
        ((_, spooled, _),) = _spooled(agent)
    finally:
        agent.stop()
    assert (spooled.columns["src_ip"] == batch.columns["src_ip"]).all()


def test_export_listener_binds_at_start_and_stops_with_the_agent(tmp_path) -> None:
    import socket
    import time

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write_config(tmp_path, "127.0.0.1:1")  # no broker: batches wait in the spool
    path.write_text(path.read_text().replace("[sources]", f'[sources]\nexport_listen = ["127.0.0.1:{port}"]'))
    agent = Agent(load_agent_config(path)).start()
    try:
        # look the socket up in the kernel's table: binding a probe to the port to see whether it is
        # taken would race the agent's own bind (and made it fail when the probe won)
        def bound() -> bool:
            with open("/proc/net/udp") as table:
                return any(line.split()[1] == f"0100007F:{port:04X}" for line in table.readlines()[1:])

        deadline = time.monotonic() + 10
        while not bound() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bound()
    finally:
        agent.stop()
    assert agent.sources_done
