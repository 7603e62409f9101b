"""The agent's packet ring on a real capture: a flow the meter reported is cut back out of the ring
with exactly its packets (both directions), the ring stays within its limits, and the loopback
endpoint wants its token."""

from __future__ import annotations

import io
import urllib.error
import urllib.request

import numpy as np
import pytest

from finsa.collectors.agent.endpoint import LocalEndpoint
from finsa.collectors.agent.packet_ring import PacketRing
from finsa.collectors.meter.flowmeter import meter_capture
from finsa.collectors.pcap.capture import read_capture
from tests.conftest import shared_data


@pytest.fixture(scope="module")
def capture():
    return shared_data("attacks/evilfingers-nmap") / "nmap-tcp-syn-scan.pcap"


def _ring(capture, **limits) -> PacketRing:
    ring = PacketRing(**limits)
    for batch in read_capture(capture, chunk_packets=64):
        ring.add(batch)
    return ring


def test_a_metered_flow_is_cut_back_out_with_all_its_packets(capture):
    flows = [r for b in meter_capture(capture, "nfstream") for r in b.rows()]
    flow = max(flows, key=lambda f: f["src2dst_packets"] + f["dst2src_packets"])
    ring = _ring(capture)
    out = io.BytesIO()
    count = ring.cut(out, a=flow["src_ip"], b=flow["dst_ip"], a_port=flow["src_port"], b_port=flow["dst_port"],
                     protocol=flow["protocol"], from_ms=flow["first_seen_ms"], to_ms=flow["last_seen_ms"])
    assert count == flow["src2dst_packets"] + flow["dst2src_packets"] > 0
    again = list(read_capture(io.BytesIO(out.getvalue())))
    assert sum(len(b) for b in again) == count
    assert np.all(np.diff(np.concatenate([b.ts_ns for b in again])) >= 0)


def test_the_ring_keeps_within_its_byte_limit(capture):
    ring = _ring(capture, max_bytes=20_000)
    assert 0 < ring.bytes <= 20_000
    assert ring.cut(io.BytesIO(), a="10.0.0.1", b="10.0.0.2", from_ms=0, to_ms=2**40) == 0


def test_the_endpoint_needs_its_token_and_sane_parameters(capture):
    from finsa.collectors.agent.pseudonym import Pseudonymiser
    from finsa.collectors.agent.translate import pseudonym_of

    flows = [r for b in meter_capture(capture, "nfstream") for r in b.rows()]
    flow = flows[0]
    inside = Pseudonymiser(bytes(range(32)), [flow["src_ip"] + ("/16" if "." in flow["src_ip"] else "/64")])
    endpoint = LocalEndpoint(_ring(capture), pseudonymiser=inside).start()
    base = f"http://127.0.0.1:{endpoint.port}/pcap?a={flow['src_ip']}&b={flow['dst_ip']}" \
           f"&from_ms={flow['first_seen_ms']}&to_ms={flow['last_seen_ms']}"

    def get(url: str, token: str | None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""

    try:
        assert get(base, None)[0] == 401 and get(base, "wrong")[0] == 401
        status, body = get(base, endpoint.token)
        assert status == 200 and body[:4] == bytes.fromhex("4d3cb2a1")  # nanosecond pcap, little-endian
        assert get(base.replace("a=", "a=not-an-ip&x="), endpoint.token)[0] == 400
        alias = pseudonym_of(inside, flow["src_ip"])
        as_shown = base.replace(f"a={flow['src_ip']}", f"a={alias}").replace(
            f"b={flow['dst_ip']}", f"b={pseudonym_of(inside, flow['dst_ip'])}") + "&pseudonyms=1"  # both as shown
        assert alias != flow["src_ip"] and get(as_shown, endpoint.token)[1] == body  # read in clear at the agent
    finally:
        endpoint.stop()
    with pytest.raises(ValueError):
        LocalEndpoint(PacketRing(), host="0.0.0.0")


def test_the_agent_serves_its_ring_on_loopback_with_the_configured_token(tmp_path):
    from finsa.collectors.agent.agent import Agent
    from finsa.collectors.agent.config import load_agent_config
    from finsa.errors import ConfigError
    from finsa.streams.broker import free_port
    from tests.collectors.agent.agent_helpers import write_config

    token = tmp_path / "pcap.token"
    token.write_text("a-token-for-the-analyst\n")
    ring = f'[packet_ring]\nmax_bytes = 2000000\nlisten = "127.0.0.1:0"\ntoken_file = "{token}"\n'
    path = write_config(tmp_path, f"127.0.0.1:{free_port()}")
    path.write_text(path.read_text() + ring)
    agent = Agent(load_agent_config(path), retry_s=0.2).start(sources=False)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{agent.pcap_port}/pcap?a=10.0.0.1&b=10.0.0.2&from_ms=0"
                                         "&to_ms=1", headers={"Authorization": "Bearer a-token-for-the-analyst"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["X-Finsa-Packets"] == "0" and len(response.read()) == 24  # header only
        import json

        from finsa.collectors.agent.pseudonym import Pseudonymiser
        from finsa.wire import ips_from_strings, ips_to_strings
        from tests.collectors.agent.agent_helpers import KEY_HEX

        expected = ips_to_strings(Pseudonymiser(bytes.fromhex(KEY_HEX), ["10.0.0.0/8"]).apply(
            ips_from_strings(["10.20.30.40"])))[0]

        def translate(address: str) -> dict:
            asked = urllib.request.Request(f"http://127.0.0.1:{agent.pcap_port}/translate?address={address}",
                                           headers={"Authorization": "Bearer a-token-for-the-analyst"})
            with urllib.request.urlopen(asked, timeout=10) as response:
                return json.loads(response.read())

        assert translate("10.20.30.40")["pseudonym"] == expected != "10.20.30.40"
        assert translate(expected)["clear"] == "10.20.30.40"  # what an alert shows, read in clear
        assert translate("192.0.2.1") == {"address": "192.0.2.1", "pseudonym": "192.0.2.1", "clear": None}
    finally:
        agent.stop()
    path.write_text(path.read_text().replace('listen = "127.0.0.1:0"', 'listen = "0.0.0.0:9465"'))
    with pytest.raises(ConfigError, match="loopback"):
        load_agent_config(path)
