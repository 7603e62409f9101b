"""The agent's loopback endpoint as a browser meets it: CORS for the web view's origin only, the
token in a header, batch translation (one call for a table), everything else refused."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from finsa.collectors.agent.endpoint import MAX_BODY_BYTES, LocalEndpoint
from finsa.collectors.agent.packet_ring import PacketRing
from finsa.collectors.agent.pseudonym import Pseudonymiser
from finsa.collectors.agent.translate import MAX_BATCH, pseudonym_of

WEB = "https://finsa.centre.example"
KEY = bytes(range(32))


@pytest.fixture(scope="module")
def endpoint():
    p = Pseudonymiser(KEY, ["10.4.0.0/16"])
    served = LocalEndpoint(PacketRing(), token="t0ken", pseudonymiser=p, web_origin=WEB + "/").start()
    yield served, p
    served.stop()


def _ask(endpoint: LocalEndpoint, method: str, path: str, headers: dict | None = None,
         body: bytes | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{endpoint.port}{path}", data=body, method=method,
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _batch(addresses: object) -> bytes:
    return json.dumps({"addresses": addresses}).encode()


def test_preflight_answers_the_web_views_origin_only(endpoint):
    served, _ = endpoint
    asked = {"Origin": WEB, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}
    status, headers, _ = _ask(served, "OPTIONS", "/translate", asked)
    assert status == 204 and headers["Access-Control-Allow-Origin"] == WEB
    assert "Authorization" in headers["Access-Control-Allow-Headers"] and "Access-Control-Allow-Credentials" not in headers
    private = _ask(served, "OPTIONS", "/pcap", {**asked, "Access-Control-Request-Method": "GET",
                                                 "Access-Control-Request-Private-Network": "true"})
    assert private[0] == 204 and private[1]["Access-Control-Allow-Private-Network"] == "true"
    for refused in ({**asked, "Origin": "https://evil.example"}, {**asked, "Origin": "null"},
                    {**asked, "Access-Control-Request-Method": "DELETE"},
                    {**asked, "Access-Control-Request-Headers": "cookie"}):
        status, headers, _ = _ask(served, "OPTIONS", "/translate", refused)
        assert status == 403, refused
        assert headers.get("Access-Control-Allow-Origin") in (None, WEB) and "*" not in str(headers)
    assert _ask(served, "OPTIONS", "/metrics", asked)[0] == 404
    assert _ask(served, "OPTIONS", "/pcap", {**asked, "Access-Control-Request-Method": "POST"})[0] == 403


def test_a_batch_is_one_call_and_needs_the_token(endpoint):
    served, p = endpoint
    clear = [f"10.4.0.{k}" for k in range(200)] + ["192.0.2.1", "10.4.9.0/24"]
    auth = {"Authorization": "Bearer t0ken", "Content-Type": "application/json", "Origin": WEB}
    status, headers, body = _ask(served, "POST", "/translate", auth, _batch(clear))
    assert status == 200 and headers["Access-Control-Allow-Origin"] == WEB
    results = json.loads(body)["results"]
    assert [r["address"] for r in results] == clear
    assert results[0]["pseudonym"] == pseudonym_of(p, "10.4.0.0") != "10.4.0.0"
    assert results[200] == {"address": "192.0.2.1", "pseudonym": "192.0.2.1", "clear": None}
    network = results[201]["pseudonym"]
    assert network.endswith("/24") and network.startswith(pseudonym_of(p, "10.4.9.77").rsplit(".", 1)[0] + ".")
    pseudonyms = [r["pseudonym"] for r in results[:200]]
    assert all(a.startswith("10.4.") for a in pseudonyms + [network])  # still in 10.4.0.0/16, the network
    assert len(set(pseudonyms)) == 200 and pseudonyms != clear[:200]  # distinct hosts stay distinct
    back = json.loads(_ask(served, "POST", "/translate", auth,
                           _batch([r["pseudonym"] for r in results[:200]] + [network]))[2])["results"]
    assert [r["clear"] for r in back] == clear[:200] + ["10.4.9.0/24"]  # read in clear, hosts and network
    assert _ask(served, "POST", "/translate", {**auth, "Authorization": "Bearer wrong"}, _batch(clear))[0] == 401
    assert _ask(served, "POST", "/translate", {k: v for k, v in auth.items() if k != "Authorization"},
                _batch(clear))[0] == 401
    assert _ask(served, "POST", "/translate", {**auth, "Cookie": "token=t0ken", "Authorization": ""},
                _batch(clear))[0] == 401  # a cookie is no token


def test_everything_else_is_refused(endpoint):
    served, _ = endpoint
    auth = {"Authorization": "Bearer t0ken", "Content-Type": "application/json"}
    other_origin = _ask(served, "POST", "/translate", {**auth, "Origin": "https://evil.example"}, _batch(["10.4.0.1"]))
    assert other_origin[0] == 403 and "Access-Control-Allow-Origin" not in other_origin[1]
    assert b"10.4" not in other_origin[2]
    assert _ask(served, "POST", "/translate", auth, _batch(["10.4.0.1"] * (MAX_BATCH + 1)))[0] == 400
    assert _ask(served, "POST", "/translate", auth, _batch(["10.4.0.1", "not-an-ip"]))[2].count(b"addresses[1]") == 1
    assert _ask(served, "POST", "/translate", auth, _batch([{"x": 1}]))[0] == 400
    assert _ask(served, "POST", "/translate", auth, b'{"addresses": [], "more": 1}')[0] == 400
    assert _ask(served, "POST", "/translate", auth, b"[1, 2]")[0] == 400
    assert _ask(served, "POST", "/translate", auth, b"{not json")[0] == 400
    assert _ask(served, "POST", "/translate", {**auth, "Content-Type": "text/plain"}, _batch(["10.4.0.1"]))[0] == 415
    assert _ask(served, "POST", "/translate", auth, b" " * (MAX_BODY_BYTES + 1))[0] == 413
    assert _ask(served, "POST", "/pcap", auth, b"{}")[0] == 405
    assert _ask(served, "GET", "/", auth)[0] == 404
    assert _ask(served, "PUT", "/translate", auth, b"{}")[0] == 501
    single = _ask(served, "GET", "/translate?address=10.4.0.1", auth)  # the one-address form stays
    assert single[0] == 200 and json.loads(single[2])["address"] == "10.4.0.1"


def test_without_a_web_origin_no_browser_may_call():
    served = LocalEndpoint(PacketRing(), token="t0ken", pseudonymiser=Pseudonymiser(KEY, ["10.4.0.0/16"])).start()
    try:
        asked = {"Origin": WEB, "Access-Control-Request-Method": "GET"}
        assert _ask(served, "OPTIONS", "/translate", asked)[0] == 403
        assert _ask(served, "GET", "/translate?address=10.4.0.1", {"Origin": WEB, "Authorization": "Bearer t0ken"})[0] == 403
        assert _ask(served, "GET", "/translate?address=10.4.0.1", {"Authorization": "Bearer t0ken"})[0] == 200
    finally:
        served.stop()
    with pytest.raises(ValueError, match="plain http"):
        LocalEndpoint(PacketRing(), web_origin="http://finsa.centre.example")


def test_the_agent_config_takes_the_web_origin_strictly(tmp_path):
    from finsa.collectors.agent.config import load_agent_config
    from finsa.errors import ConfigError
    from tests.collectors.agent.agent_helpers import write_config

    token = tmp_path / "endpoint.token"
    token.write_text("t0ken\n")
    path = write_config(tmp_path, "127.0.0.1:9092")
    base = path.read_text()
    ring = f'[packet_ring]\nlisten = "127.0.0.1:0"\ntoken_file = "{token}"\nweb_origin = "%s"\n'
    path.write_text(base + ring % "https://finsa.centre.example/")
    assert load_agent_config(path).packet_ring.web_origin == "https://finsa.centre.example"
    for bad in ("http://finsa.centre.example", "https://finsa.centre.example/flows", "*"):
        path.write_text(base + ring % bad)
        with pytest.raises(ConfigError, match="web_origin"):
            load_agent_config(path)


@pytest.mark.parametrize("name", ["finsa.collectors.agent.endpoint", "finsa.collectors.agent.translate",
                                  "finsa.institutions", "finsa.collectors.agent.pseudonym",
                                  "finsa.collectors.agent.ipv4_words",
                                  "finsa.collectors.agent.http_thread", "finsa.collectors.agent.metrics_http"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
