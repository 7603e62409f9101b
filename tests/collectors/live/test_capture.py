"""Live capture for real: a throw-away network namespace, a veth pair, traffic replayed into one end.

Everything happens inside the namespace ``finsa-test-<random>``: frames go in at ``va`` and are
captured at its peer ``vb``; nothing reaches a real network. IPv6 is off in the namespace and
the veths carry no address, so the kernel itself sends nothing that would disturb the counts.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from finsa.collectors.live.bpf import compile_filter
from finsa.collectors.live.capture import LiveCapture
from finsa.collectors.live.netns import in_netns
from finsa.collectors.live.ring import empty_batch
from finsa.collectors.meter.flowmeter import FlowMeter, meter_capture
from finsa.collectors.pcap.writer import PcapWriter
from finsa.errors import CaptureError
from finsa.metrics import REGISTRY
from tests.conftest import need_tool
from tests.readable_install import nobody_python

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="live capture tests need root")]

SMALL_RING = {"block_size": 1 << 20, "block_count": 8}
_FLOW_KEY = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
_FLOW_COUNTS = ("src2dst_packets", "dst2src_packets", "src2dst_bytes", "dst2src_bytes")


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def netns():
    need_tool("ip")
    name = f"finsa-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], check=True, capture_output=True)
        _ip(name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        for dev in ("va", "vb"):
            _ip(name, "link", "set", dev, "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.fixture(scope="module")
def sender(netns):
    """A raw socket on ``va`` inside the namespace: ``sender.send(frame)`` puts a frame on the wire."""
    def open_raw() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.bind(("va", 0))
        return s
    sock = in_netns(netns, open_raw)
    yield sock
    sock.close()


def _mac(host: int) -> bytes:
    return bytes([2, 0, 0, 0, 0, host & 0xFF])


def _ipv4_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    return ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF


def make_frame(src: str, dst: str, proto: int, sport: int, dport: int, payload: bytes, forward: bool = True) -> bytes:
    """An Ethernet/IPv4 frame carrying a UDP (17) or TCP (6, ACK) segment."""
    l4 = (struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) if proto == 17
          else struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, 0x10, 65535, 0, 0))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4) + len(payload), 1, 0, 64, proto, 0,
                               socket.inet_aton(src), socket.inet_aton(dst)))
    ip[10:12] = _ipv4_checksum(bytes(ip)).to_bytes(2, "big")
    macs = _mac(2 if forward else 1) + _mac(1 if forward else 2)
    return macs + b"\x08\x00" + bytes(ip) + l4 + payload


def make_frames(flows: int, packets_per_flow: int, seed: int = 1) -> list[bytes]:
    """Frames of ``flows`` flows (odd: UDP to port 53, even: TCP to 443), both directions, interleaved."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(packets_per_flow):
        for f in range(flows):
            a, b = f"10.1.{f // 250}.{f % 250 + 1}", f"192.0.2.{f % 200 + 1}"
            proto, sport, dport = (17 if f % 2 else 6), 40000 + f, (53 if f % 2 else 443)
            payload = bytes(int(rng.integers(0, 1200)))
            forward = k % 3 != 2
            out.append(make_frame(a, b, proto, sport, dport, payload) if forward
                       else make_frame(b, a, proto, dport, sport, payload, forward=False))
    return out


def _capture_all(cap: LiveCapture) -> list[bytes]:
    frames = []
    for batch in cap.batches(timeout_ms=300, stop_when_idle=True):
        frames += [batch.packet(i) for i in range(len(batch))]
    return frames


def _flow_table(batches) -> dict[tuple, tuple]:
    table = {}
    for fb in batches:
        for row in fb.rows():
            key = tuple(row[k] for k in _FLOW_KEY)
            assert key not in table
            table[key] = tuple(row[k] for k in _FLOW_COUNTS)
    return table


def test_every_replayed_packet_is_captured_and_metered_into_the_same_flows(netns, tmp_path):
    tcpreplay = need_tool("tcpreplay")
    frames = make_frames(flows=40, packets_per_flow=12)
    pcap = tmp_path / "replay.pcap"
    with PcapWriter(pcap) as w:
        for i, frame in enumerate(frames):
            w.write(1_700_000_000_000_000_000 + i * 1000, frame)
    walks = REGISTRY.get("finsa_capture_block_walks_total")
    loops_before = walks.value(method="loop")
    with LiveCapture("vb", netns=netns, **SMALL_RING) as cap:
        subprocess.run(["ip", "netns", "exec", netns, tcpreplay, "-q", "--topspeed", "-i", "va", str(pcap)],
                       check=True, capture_output=True)
        meter = FlowMeter("nfstream")
        live_flows, got, got_bytes = [], 0, 0
        for batch in cap.batches(timeout_ms=300, stop_when_idle=True):
            got, got_bytes = got + len(batch), got_bytes + int(batch.caplen.sum())
            live_flows.append(meter.add(batch))
        live_flows.append(meter.flush())
        stats = cap.stats()
    assert got == len(frames)
    assert got_bytes == sum(map(len, frames))
    assert stats["kernel_packets"] == len(frames) and stats["kernel_drops"] == 0
    expected = _flow_table(meter_capture(pcap, "nfstream"))
    assert len(expected) == 40
    assert _flow_table(b for b in live_flows if b is not None) == expected
    assert walks.value(method="loop") == loops_before, "the kernel's blocks take the vectorised chain"


def test_frames_arrive_byte_for_byte_with_vlan_tags_and_timestamps(netns, sender):
    untagged = make_frame("10.0.0.1", "10.0.0.2", 17, 5, 7, b"tagged")
    tagged = untagged[:12] + bytes.fromhex("8100602a") + untagged[12:]  # VLAN 42, priority 3
    frames = make_frames(flows=3, packets_per_flow=2) + [tagged]
    before = time.time_ns()
    with LiveCapture("vb", netns=netns, **SMALL_RING) as cap:
        for frame in frames:
            sender.send(frame)
        batches = list(cap.batches(timeout_ms=300, stop_when_idle=True))
    got = [b.packet(i) for b in batches for i in range(len(b))]
    assert got == frames
    ts = np.concatenate([b.ts_ns for b in batches])
    assert (ts >= before - 10**9).all() and (np.diff(ts) >= 0).all()


def test_bpf_expression_keeps_only_matching_packets(netns, sender):
    try:
        compile_filter("udp")
    except CaptureError as exc:
        pytest.skip(str(exc))
    frames = make_frames(flows=10, packets_per_flow=4)  # odd flows are UDP to/from port 53
    wanted = [f for f in frames if f[23] == 17 and (f[36:38] == b"\x00\x35" or f[34:36] == b"\x00\x35")]
    with LiveCapture("vb", bpf="udp port 53", netns=netns, **SMALL_RING) as cap:
        for frame in frames:
            sender.send(frame)
        got = _capture_all(cap)
        stats = cap.stats()
    assert got == wanted and len(wanted) == 20
    assert stats["kernel_packets"] == len(wanted)


def test_raw_bpf_program_and_snaplen(netns, sender):
    frames = make_frames(flows=6, packets_per_flow=3)
    tcp_only = "6,40 0 0 12,21 0 3 2048,48 0 0 23,21 0 1 6,6 0 0 262144,6 0 0 0"  # tcpdump -ddd "ip proto 6"
    with LiveCapture("vb", bpf=tcp_only, snaplen=96, netns=netns, **SMALL_RING) as cap:
        for frame in frames:
            sender.send(frame)
        batches = list(cap.batches(timeout_ms=300, stop_when_idle=True))
    wanted = [f for f in frames if f[23] == 6]
    assert sum(map(len, batches)) == len(wanted) == 9
    assert [b.packet(i) for b in batches for i in range(len(b))] == [f[:96] for f in wanted]
    assert np.concatenate([b.wirelen for b in batches]).tolist() == [len(f) for f in wanted]


def test_fanout_splits_flows_across_two_sockets_without_loss(netns, sender):
    frames = make_frames(flows=64, packets_per_flow=5)
    group = secrets.randbelow(0xFFFF)
    with LiveCapture("vb", fanout_group=group, netns=netns, **SMALL_RING) as one, \
         LiveCapture("vb", fanout_group=group, netns=netns, **SMALL_RING) as two:
        for frame in frames:
            sender.send(frame)
        parts = [_capture_all(one), _capture_all(two)]
        stats = [one.stats(), two.stats()]
    assert sorted(parts[0] + parts[1]) == sorted(frames)
    assert len(parts[0]) > 0 and len(parts[1]) > 0
    flows = [{_endpoints(f) for f in part} for part in parts]
    assert not flows[0] & flows[1], "each flow, both directions, goes to one socket"
    assert [s["kernel_drops"] for s in stats] == [0, 0]
    assert sum(s["kernel_packets"] for s in stats) == len(frames)


def _endpoints(frame: bytes) -> frozenset:
    """The unordered (address, port) pair of an IPv4 TCP/UDP frame: one value per flow."""
    return frozenset({(frame[26:30], frame[34:36]), (frame[30:34], frame[36:38])})


def test_a_full_ring_drops_and_the_drops_are_counted(netns, sender):
    drops_metric = REGISTRY.get("finsa_capture_kernel_drops_total")
    before = drops_metric.value(interface="vb")
    frames = make_frames(flows=4, packets_per_flow=100)  # ~240 kB, the ring holds 16 kB
    with LiveCapture("vb", netns=netns, block_size=8192, block_count=2, snaplen=2048) as cap:
        for frame in frames:
            sender.send(frame)  # nobody reads while sending: the ring overflows
        got = sum(len(b) for b in cap.batches(timeout_ms=300, stop_when_idle=True))
        stats = cap.stats()
    assert 0 < got < len(frames)
    assert stats["kernel_drops"] == len(frames) - got
    assert stats["kernel_packets"] == len(frames)
    assert drops_metric.value(interface="vb") - before == stats["kernel_drops"]
    assert 'finsa_capture_kernel_drops_total{interface="vb"}' in REGISTRY.render()


def test_missing_interface_and_missing_privilege_are_capture_errors(netns):
    with pytest.raises(CaptureError, match="no interface 'nope0'"):
        LiveCapture("nope0", netns=netns, **SMALL_RING).start()
    script = ("from finsa.collectors.live.capture import LiveCapture\n"
              "from finsa.errors import CaptureError\n"
              "try:\n    LiveCapture('lo', block_size=1 << 20, block_count=1).start()\n"
              "except CaptureError as e:\n    print(e)\n")
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                           *nobody_python(Path("/tmp")), "-c", script], capture_output=True, text=True,
                          cwd="/", check=False)  # a copy nobody may read when the clone's folder is 0700
    assert "needs root or CAP_NET_RAW" in done.stdout, done.stderr


@pytest.mark.parametrize("fanout", [False, True])
def test_drain_reads_the_block_the_kernel_is_still_filling(netns, sender, fanout):
    frames = make_frames(flows=5, packets_per_flow=4)
    group = secrets.randbelow(0xFFFF) if fanout else None
    cap = LiveCapture("vb", netns=netns, fanout_group=group, block_timeout_ms=60_000, **SMALL_RING).start()
    for frame in frames:
        sender.send(frame)
    assert sum(len(b) for b in cap.batches(timeout_ms=100, stop_when_idle=True)) == 0  # nothing retired yet
    got = [b.packet(i) for b in cap.drain() for i in range(len(b))]
    assert got == frames and not cap.running
    assert cap.stats()["packets"] == len(frames)


def test_drain_after_handing_back_blocks_yields_no_stale_packets(netns, sender):
    frames = make_frames(flows=5, packets_per_flow=4)
    with LiveCapture("vb", netns=netns, **SMALL_RING) as cap:
        for frame in frames:
            sender.send(frame)
        assert len(_capture_all(cap)) == len(frames)
        assert list(cap.drain()) == []


def test_waiting_blocks_can_be_joined_into_one_batch(netns, sender):
    frames = make_frames(flows=8, packets_per_flow=50)  # ~240 kB: several 64 kB blocks
    with LiveCapture("vb", netns=netns, block_size=1 << 16, block_count=16, snaplen=2048) as cap:
        for frame in frames:
            sender.send(frame)
        time.sleep(0.2)  # let the last block retire: all of them are waiting now
        batches = list(cap.batches(timeout_ms=200, stop_when_idle=True, max_blocks=64))
        assert cap.stats()["blocks"] > 1
    assert len(batches) == 1
    assert [batches[0].packet(i) for i in range(len(batches[0]))] == frames


def test_idle_polls_yield_empty_batches_and_stop_from_another_thread_ends_iteration(netns):
    cap = LiveCapture("vb", netns=netns, **SMALL_RING).start()
    seen = []
    stopper = threading.Timer(0.3, cap.stop)
    stopper.start()
    try:
        for batch in cap.batches(timeout_ms=50):
            seen.append(len(batch))
            assert len(seen) < 100, "stop() did not end the iteration"
    finally:
        stopper.cancel()
        cap.stop()
    assert seen and set(seen) == {0}
    assert FlowMeter("nfstream").add(empty_batch()) is None  # an idle tick is harmless to the meter
