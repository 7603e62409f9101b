"""The one place detectors are registered by name.

A new detector is a module with one :class:`~finsa.detectors.base.Detector` subclass, added to
:data:`DETECTORS` here; the contract test (tests/detectors/test_contract.py) then holds it to
the detector contract automatically.

>>> sorted(DETECTORS)  # doctest: +NORMALIZE_WHITESPACE
['anomaly', 'arpspoof', 'beaconing', 'bruteforce', 'dga', 'dnstunnel', 'exfiltration', 'intel',
 'lateral', 'portscan', 'probescan', 'reflection', 'synflood', 'volumetric', 'webattack']
>>> create("portscan", min_ports=30).min_ports
30
"""

from __future__ import annotations

from typing import Any

from finsa.detectors.anomaly import AnomalyDetector
from finsa.detectors.arpspoof import ArpSpoofDetector
from finsa.detectors.base import Detector, DetectorParamError
from finsa.detectors.beaconing import BeaconingDetector
from finsa.detectors.bruteforce import BruteForceDetector
from finsa.detectors.dnstunnel import DgaDetector, DnsTunnelDetector
from finsa.detectors.exfiltration import ExfiltrationDetector
from finsa.detectors.intel import IntelDetector
from finsa.detectors.lateral import LateralMovementDetector
from finsa.detectors.portscan import PortScanDetector
from finsa.detectors.probescan import ProbeScanDetector
from finsa.detectors.floods.reflection import ReflectionDetector
from finsa.detectors.floods.volumetric import VolumetricDetector
from finsa.detectors.synflood import SynFloodDetector
from finsa.detectors.webattack import WebAttackDetector

__all__ = ["DETECTORS", "DEFAULT_NAMES", "create", "names"]

#: Detector name -> class.
DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (PortScanDetector, SynFloodDetector, BruteForceDetector, AnomalyDetector,
                              DnsTunnelDetector, DgaDetector, BeaconingDetector, ExfiltrationDetector,
                              LateralMovementDetector, WebAttackDetector, IntelDetector, ArpSpoofDetector,
                              ProbeScanDetector, ReflectionDetector, VolumetricDetector)
}
#: The detectors an engine runs when none are given: those with a low false-positive risk out of
#: the box. ``beaconing``, ``exfiltration`` and ``lateral`` want local tuning first (allow-listed
#: periodic services, backup hosts, jump hosts, the institution's own networks). ``intel`` is
#: silent until the stream layer feeds it indicators. Forwarded IDS alerts (Zeek notices, Suricata
#: alerts) are mapped by the agent (:mod:`finsa.collectors.idslogs`), not by a detector.
DEFAULT_NAMES: tuple[str, ...] = ("portscan", "synflood", "bruteforce", "anomaly", "dnstunnel", "dga",
                                  "webattack", "intel", "arpspoof", "probescan", "reflection", "volumetric")


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
