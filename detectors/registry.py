"""The one place detectors are registered by name.

A new detector is a module with one :class:`~finsa.detectors.base.Detector` subclass, added to
:data:`DETECTORS` here; the contract test (tests/detectors/test_contract.py) then holds it to
the detector contract automatically.

>>> sorted(DETECTORS)  # doctest: +NORMALIZE_WHITESPACE
['anomaly', 'arpspoof', 'beaconing', 'bruteforce', 'callback', 'dga', 'dnstunnel', 'download', 'driveby',
 'exfiltration', 'exploit', 'httpc2', 'icmpchannel', 'intel', 'lateral', 'portscan', 'probescan', 'reconnect',
 'reflection', 'remoteservice', 'synflood', 'volumetric', 'webattack']
>>> create("portscan", min_ports=30).min_ports
30
"""

from __future__ import annotations

from typing import Any

from finsa.detectors.anomaly import AnomalyDetector
from finsa.detectors.arpspoof import ArpSpoofDetector
from finsa.detectors.base import Detector, DetectorParamError
from finsa.detectors.beaconing import BeaconingDetector, ReconnectDetector
from finsa.detectors.bruteforce import BruteForceDetector
from finsa.detectors.payload.delivery import DownloadDetector, IcmpChannelDetector
from finsa.detectors.payload.exploits import CallbackDetector, ExploitDetector
from finsa.detectors.payload.httpc2 import DriveByDetector, HttpC2Detector
from finsa.detectors.dnstunnel import DgaDetector, DnsTunnelDetector
from finsa.detectors.exfiltration import ExfiltrationDetector
from finsa.detectors.intel import IntelDetector
from finsa.detectors.lateral import LateralMovementDetector
from finsa.detectors.portscan import PortScanDetector
from finsa.detectors.probescan import ProbeScanDetector
from finsa.detectors.floods.reflection import ReflectionDetector
from finsa.detectors.floods.volumetric import VolumetricDetector
from finsa.detectors.payload.remote_service import RemoteServiceDetector
from finsa.detectors.synflood import SynFloodDetector
from finsa.detectors.webattack import WebAttackDetector

__all__ = ["DETECTORS", "DEFAULT_NAMES", "create", "names"]

#: Detector name -> class.
DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (PortScanDetector, SynFloodDetector, BruteForceDetector, AnomalyDetector,
                              DnsTunnelDetector, DgaDetector, BeaconingDetector, ExfiltrationDetector,
                              LateralMovementDetector, WebAttackDetector, IntelDetector, ArpSpoofDetector,
                              ProbeScanDetector, ReflectionDetector, VolumetricDetector,
                              ExploitDetector, CallbackDetector, DownloadDetector, IcmpChannelDetector,
                              RemoteServiceDetector, ReconnectDetector, HttpC2Detector, DriveByDetector)
}
#: The detectors an engine runs when none are given: those with a low false-positive risk out of
#: the box. ``exfiltration`` and ``lateral`` want local tuning first (backup hosts, jump hosts, the
#: institution's own networks); ``beaconing`` runs by default with multicast, broadcast and
#: link-local destinations excluded. The marker detectors (``exploit``, ``callback``, ``download``,
#: ``icmpchannel``, ``remoteservice``, ``driveby``) read FLOW v2's ``app_markers``. ``intel`` is
#: silent until the stream layer feeds it indicators. Forwarded IDS alerts (Zeek notices, Suricata
#: alerts) are mapped by the agent (:mod:`finsa.collectors.idslogs`), not by a detector.
DEFAULT_NAMES: tuple[str, ...] = ("portscan", "synflood", "bruteforce", "anomaly", "dnstunnel", "dga",
                                  "webattack", "intel", "arpspoof", "probescan", "reflection", "volumetric",
                                  "beaconing", "exploit", "callback", "download", "icmpchannel", "remoteservice",
                                  "reconnect", "httpc2", "driveby")


def names(record: str | None = None) -> list[str]:
    """Registered detector names, sorted; only those consuming ``record`` ("flow", "arp") when given."""
    return sorted(n for n, cls in DETECTORS.items() if record is None or cls.record == record)


def create(name: str, seed: int = 0, **params: Any) -> Detector:
    """A new detector by name; an unknown name or parameter raises DetectorParamError."""
    cls = DETECTORS.get(name)
    if cls is None:
        raise DetectorParamError(f"unknown detector {name!r} (known: {', '.join(names())})")
    try:
        return cls(seed=seed, **params)
    except TypeError as exc:
        raise DetectorParamError(f"{name}: {exc}") from None
