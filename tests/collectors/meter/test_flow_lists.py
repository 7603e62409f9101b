"""FLOW v2 list fields from real captures: every DNS question, every HTTP request, payload markers."""

from __future__ import annotations

import numpy as np
import pytest

from finsa.collectors.meter.flow_lists import MAX_ITEMS_PER_KEY, FlowLists
from finsa.collectors.meter.flowmeter import meter_capture
from finsa.collectors.meter.payload_marks import _icmp_kind, _is_exe, _rdp, _shell
from finsa.wire import FLOW, LIST_SEP, MAX_DNS_QUERIES, RecordBatch, decode_batch, encode_batch, split_list
from tests.conftest import shared_data


def flows_of(sub: str, name: str, chunk_packets: int = 65536) -> list[dict]:
    path = shared_data(sub) / name
    return RecordBatch.concat(list(meter_capture(path, "agent", chunk_packets=chunk_packets))).rows()


def markers(rows: list[dict]) -> set[str]:
    return {m for r in rows for m in r["app_markers"].split(",") if m}


def test_every_dns_question_of_a_flow_is_kept_whatever_the_chunking() -> None:
    """iodine's handshake: 12 NULL questions from one client port, one flow."""
    for chunk in (65536, 3):
        (flow,) = [r for r in flows_of("attacks/dmachard-dns", "iodine.pcap", chunk) if r["dns_queries"]]
        questions = split_list(flow["dns_queries"])
        assert len(questions) == 12 and questions[0] == f"{flow['dns_query']}/{flow['dns_qtype']}"
        assert all(q.endswith("/10") for q in questions)


def test_every_http_request_of_a_flow_with_status_and_type() -> None:
    rows = flows_of("attacks/chrissanders-packets", "aurora-ie-exploit.pcapng")
    (web,) = [r for r in rows if r["http_requests"]]
    requests = [item.split("\t") for item in split_list(web["http_requests"])]
    assert len(requests) >= 3 and requests[0][:4] == ["GET", "192.168.100.202", "/info", "302"]
    assert all(len(r) == 5 for r in requests)


@pytest.mark.parametrize("sub, name, expected", [
    ("attacks/testmynids-shadowbrokers", "eternalblue-success-win7.pcap",
     {"smb1_nt_trans_large_from_src", "smb1_trans2_secondary_from_src", "smb1_trans2_session_setup_from_src"}),
    ("attacks/testmynids-shadowbrokers", "eternalromance-doublepulsar-meterpreter.pcap",
     {"smb1_trans2_session_setup_from_src", "exe_from_dst"}),
    ("attacks/pcap-attack", "psexec-lateral-movement-smb.pcapng",
     {"smb_admin_share_from_src", "smb_exe_write_from_src", "dcerpc_svcctl_from_src"}),
    ("attacks/ppa-1e", "blaster-worm-shell.pcap", {"shell_from_dst"}),
    ("attacks/ppa-1e", "icmp-covert-channel.pcap", {"icmp_text_from_src"}),
    ("attacks/honeynet", "honeynet-2010-1-attack-trace.pcap", {"exe_from_src"}),
])
def test_markers_of_real_captures(sub: str, name: str, expected: set[str]) -> None:
    assert expected <= markers(flows_of(sub, name))


@pytest.mark.parametrize("name", ["smb_smb3.pcap", "rdp_rdp-proprietary-encryption.pcap", "http_get.pcap",
                                  "ntp_NTP_sync.pcap", "http_putty-upload.pcap"])
def test_benign_captures_carry_no_attack_markers(name: str) -> None:
    bad = {m for m in markers(flows_of("benign/zeek", name))
           if m.startswith(("smb1_", "smb_svcctl", "smb_exe", "rdp_", "shell", "icmp_", "exe_from_dst"))}
    assert bad == set()


def test_items_are_bounded_per_key_and_drained_at_export() -> None:
    fl = FlowLists(max_keys=2)
    keys = np.array([1] * (MAX_ITEMS_PER_KEY + 5) + [2, 3], dtype=np.uint64)
    items = [("dns", f"n{i}.example/1") for i in range(len(keys))]
    fl.add_items(keys, np.arange(len(keys)), np.ones(len(keys), bool), items)
    assert fl.stats["dropped_items"] == 5 and fl.stats["untracked_keys"] == 1
    cols = fl.columns(np.array([1, 2], np.uint64), np.array([0, 0]), np.array([10_000, 10_000]), np.array([True, True]))
    assert len(split_list(cols["dns_queries"][0])) == MAX_DNS_QUERIES and len(fl) == 0


def test_payload_checks() -> None:
    pe = b"MZ" + bytes(58) + (64).to_bytes(4, "little") + b"PE\x00\x00" + bytes(32)
    assert _is_exe(pe) and not _is_exe(b"MZ" + bytes(100)) and _is_exe(b"\x7fELF\x02\x01\x01")
    assert _shell(b"\r\nC:\\WINNT\\system32>") and not _shell(b"C:\\Users\\a\\file.txt is here\r\n")
    assert _icmp_kind(bytes(range(8)) + bytes(range(0x10, 0x38))) is None  # Unix ping pattern
    assert _icmp_kind(bytes(48)) is None
    assert _rdp(b"\x03\x00\x00\x13\x0e\xe0" + bytes(13)) == []  # a well-formed X.224 Connection Request
    assert _rdp(b"\x03\x00\x00\x05\x0e\xe0\x00") == [("mark", "rdp_bad_tpkt")]


def test_list_fields_round_trip_on_the_wire() -> None:
    b = FLOW.make_batch({"dns_queries": [LIST_SEP.join(["a.example/1", "b.example/16"]), ""],
                         "http_requests": ["GET\th\t/\t200\ttext/html", ""], "app_markers": ["smb1,exe_from_dst", ""]})
    again = decode_batch(encode_batch(b))
    assert again.rows()[0]["dns_queries"] == "a.example/1\nb.example/16" and FLOW.topic == "finsa.flows.v2"


def test_a_lone_item_outside_the_flow_waits_for_the_key_s_next_flow() -> None:
    fl = FlowLists()
    key = np.array([7], np.uint64)
    fl.add_items(key, np.array([50]), np.array([True]), [("req", "GET\tbank.example\t/")])
    early = fl.columns(key, np.array([0]), np.array([30]), np.array([True]))
    assert early["http_requests"][0] == "" and len(fl) == 1
    later = fl.columns(key, np.array([40]), np.array([60]), np.array([False]))
    assert later["http_requests"][0] == "GET\tbank.example\t/\t\t" and len(fl) == 0
    fl.add_items(key, np.array([70]), np.array([True]), [("mark", "shell")])
    assert fl.columns(key, np.array([70]), np.array([70]), np.array([False]))["app_markers"][0] == "shell_from_dst"
