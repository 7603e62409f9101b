"""The default detectors on real labelled captures of the payload-driven kinds (DNS tunnels, SMB
and shell exploits, web attacks, C2 and delivery), and on benign captures that look like them.

The scorecard (``finsa eval``) covers every capture; this keeps the detectors of these kinds
honest one capture at a time, with the detector, technique and attacker expected."""

from __future__ import annotations

import pytest

from finsa.app.offline import CaptureSource, run_offline
from tests.conftest import shared_data

CASES = [
    ("dmachard-dns/iodine.pcap", "dnstunnel", "T1071.004", "192.168.1.17"),
    ("dmachard-dns/dnscat2.pcap", "dnstunnel", "T1071.004", "192.168.1.17"),
    ("pcap-attack/c2-commands-over-dns-txt.pcap", "dnstunnel", "T1071.004", "192.168.100.121"),
    ("testmynids-shadowbrokers/eternalblue-success-win7.pcap", "exploit", "T1210", "192.168.198.204"),
    ("testmynids-shadowbrokers/eternalromance-doublepulsar-meterpreter.pcap", "callback", "T1059", "172.23.33.10"),
    ("honeynet/honeynet-2010-1-attack-trace.pcap", "exploit", "T1210", "98.114.205.102"),
    ("honeynet/honeynet-2010-1-attack-trace.pcap", "download", "T1105", "98.114.205.102"),
    ("pcap-attack/psexec-lateral-movement-smb.pcapng", "remoteservice", "T1021.002", "172.16.66.1"),
    ("ppa-1e/blaster-worm-shell.pcap", "callback", "T1059", "10.234.0.239"),
    ("ppa-1e/icmp-covert-channel.pcap", "icmpchannel", "T1095", "10.100.17.48"),
    ("chrissanders-packets/rat-infected.pcapng", "reconnect", "T1571", "172.16.0.114"),
    ("evilfingers-exploits/vacation-estate-blind-sqli.pcap", "webattack", "T1190", "117.195.143.198"),
    ("pcap-attack/foudre-backdoor-dga-c2.pcapng", "httpc2", "T1071.001", "185.56.137.138"),
    ("testmynids-neutrino/neutrino-ek-crypmic.pcap", "driveby", "T1189", "74.208.103.8"),
]


def alerts_of(path) -> list[dict]:
    result = run_offline([CaptureSource(path, "offline", f"offline-{path.stem}")])
    return result.alerts.rows() if len(result.alerts) else []


@pytest.mark.parametrize("capture, detector, technique, entity", CASES)
def test_labelled_capture_is_detected(capture: str, detector: str, technique: str, entity: str) -> None:
    got = {(a["detector"], a["technique"], a["entity"]) for a in alerts_of(shared_data("attacks") / capture)}
    assert (detector, technique, entity) in got


@pytest.mark.parametrize("capture", ["zeek/http_putty-upload.pcap", "zeek/http_206_example_b.pcap",
                                     "nfstream/upnp.pcap", "zeek/smb_smb3.pcap", "zeek/dns-edns-ecs.pcap",
                                     "nfstream/netbios.pcap"])
def test_benign_look_alike_capture_gives_no_alert(capture: str) -> None:
    """An exe upload, a Windows Update download, SSDP/UPnP and NetBIOS chatter, SMB3, DNS."""
    assert alerts_of(shared_data("benign") / capture) == []
