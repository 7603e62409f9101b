"""The detection scorecard: labelled captures in, verdicts and per-attack-type figures out.

A capture is *labelled* when ``<name>.label.json`` sits beside it (see
``shared/data/attacks/README.md``); a capture without one counts as benign (every alert on it is
false). The verdict of a labelled capture follows one rule, the same on every capture:

* attacker addresses: every IPv4/IPv6 address written in ``label.attacker_ip``; when that field
  says the sources are spoofed or reflectors, the victim's address (the first one in
  ``label.victim_ip``) stands in; for ``dns-tunnel``, ``c2``, ``exploit-kit`` and ``exfiltration``
  the addresses in ``label.victim_ip`` (the inside host) count as well;
* an alert *names* an address when the address appears anywhere in it (entity, target, evidence);
* the technique is right when the alert's technique has the same base id (``T1110`` for
  ``T1110.001``) as one of the ``T`` ids written in ``label.mitre_attack``.

``detected``: an alert names an attacker address with a right technique; ``wrong_technique``: an
alert names one, none with a right technique; ``missed``: no alert names one.

>>> lab = parse_label({"label": {"attack_type": "dos-flood", "attacker_ip": "reflectors (open resolvers)",
...                              "victim_ip": "10.10.10.10", "mitre_attack": "T1498.002"}})
>>> lab.addresses, lab.techniques
(('10.10.10.10',), ('T1498',))
>>> verdict(lab, [{"entity": "10.10.10.10", "target": "", "evidence": "{}", "technique": "T1498.001"}])
'detected'
>>> verdict(lab, [{"entity": "1.2.3.4", "target": "10.10.10.100:53", "evidence": "{}", "technique": "T1498"}])
'missed'
"""

from __future__ import annotations

import ipaddress
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["Label", "CaptureResult", "parse_label", "label_of", "verdict", "names", "find_captures",
           "summarise", "VERDICTS", "CAPTURE_SUFFIXES", "INSIDE_COUNTS"]

VERDICTS = ("detected", "wrong_technique", "missed")
#: At most this many alerts of a capture are listed in the JSON scorecard.
MAX_ALERT_ROWS = 50
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
#: Attack types where the inside (victim) host counts as an attacker address.
INSIDE_COUNTS = frozenset({"dns-tunnel", "c2", "exploit-kit", "exfiltration"})
_CANDIDATE = re.compile(r"[0-9A-Fa-f:.]{2,}")
_TECHNIQUE = re.compile(r"\bT(\d{4})(?:\.\d{3})?\b")
_STAND_IN = re.compile(r"spoof|reflector", re.IGNORECASE)


@dataclass(frozen=True)
class Label:
    """What the verdict needs from a label file."""

    attack_type: str
    addresses: tuple[str, ...]
    techniques: tuple[str, ...]
    description: str = ""


@dataclass
class CaptureResult:
    """One capture's run: its alerts (ALERT rows) and, when labelled, the verdict and timing."""

    path: str
    label: Label | None
    flows: int
    alerts: list[dict[str, Any]]
    skipped: dict[str, int] = field(default_factory=dict)
    verdict: str = ""
    first_attack_ms: int | None = None
    first_alert_ms: int | None = None
    error: str = ""

    @property
    def delay_ms(self) -> int | None:
        """Flow time from the first attack packet to the first alert that detects it."""
        if self.first_attack_ms is None or self.first_alert_ms is None:
            return None
        return max(0, self.first_alert_ms - self.first_attack_ms)

    def as_dict(self) -> dict[str, Any]:
        out = {"capture": self.path, "flows": self.flows, "alerts": len(self.alerts),
               "skipped": dict(self.skipped),
               "detectors": sorted({f"{a['detector']}:{a['technique']}" for a in self.alerts}),
               "alert_rows": [{k: a[k] for k in ("time_ms", "detector", "technique", "entity", "target")}
                              for a in self.alerts[:MAX_ALERT_ROWS]]}
        if self.label is not None:
            out.update(attack_type=self.label.attack_type, attacker=list(self.label.addresses),
                       techniques=list(self.label.techniques), verdict=self.verdict,
                       delay_ms=self.delay_ms)
        if self.error:
            out["error"] = self.error
        return out


def _addresses(text: str) -> list[str]:
    """Every IPv4/IPv6 address written in ``text``, in order, once each.

    >>> _addresses("10.99.99.8 (SMB exploit); 10.99.99.189 (handler, tcp/4444), 2001:db8::1")
    ['10.99.99.8', '10.99.99.189', '2001:db8::1']
    """
    found: list[str] = []
    for token in _CANDIDATE.findall(text or ""):
        token = token.strip(".:")
        try:
            addr = str(ipaddress.ip_address(token))
        except ValueError:
            continue
        if addr not in found:
            found.append(addr)
    return found


def parse_label(doc: Mapping[str, Any]) -> Label:
    """The :class:`Label` of a parsed ``.label.json`` document (its ``label`` object)."""
    label = doc.get("label") if isinstance(doc.get("label"), Mapping) else None
    if label is None:
        raise ValueError("no 'label' object")
    attack_type = str(label.get("attack_type", ""))
    attacker_text, victim_text = str(label.get("attacker_ip", "")), str(label.get("victim_ip", ""))
    addresses = _addresses(attacker_text)
    victims = _addresses(victim_text)
    if _STAND_IN.search(attacker_text) and victims and victims[0] not in addresses:
        addresses.append(victims[0])
    if attack_type in INSIDE_COUNTS:
        addresses += [v for v in victims if v not in addresses]
    techniques = list(dict.fromkeys(f"T{m}" for m in _TECHNIQUE.findall(str(label.get("mitre_attack", "")))))
    return Label(attack_type, tuple(addresses), tuple(techniques), str(label.get("description", "")))


def label_of(capture: Path) -> Label | None:
    """The label beside ``capture`` (``x.pcap`` -> ``x.label.json``), or None when there is none."""
    path = capture.with_name(capture.stem + ".label.json")
    if not path.is_file():
        return None
    return parse_label(json.loads(path.read_text(encoding="utf-8")))


def names(alert: Mapping[str, Any], address: str) -> bool:
    """Whether ``address`` appears in the alert's entity, target or evidence (as a whole address).

    >>> names({"entity": "10.0.0.10", "target": "", "evidence": ""}, "10.0.0.1")
    False
    >>> names({"entity": "x", "target": "10.0.0.1:80", "evidence": ""}, "10.0.0.1")
    True
    """
    text = " ".join(str(alert.get(k, "")) for k in ("entity", "target", "evidence"))
    pattern = r"(?<![0-9A-Fa-f.:])" + re.escape(address) + r"(?![0-9A-Fa-f.]|:[0-9A-Fa-f]*:)"
    return re.search(pattern, text) is not None


def _base(technique: str) -> str:
    return str(technique).split(".")[0].strip()


def right_alerts(label: Label, alerts: Iterable[Mapping[str, Any]]) -> tuple[list, list]:
    """(alerts naming an attacker address with a right technique, alerts naming one at all)."""
    naming = [a for a in alerts if any(names(a, addr) for addr in label.addresses)]
    right = [a for a in naming if _base(a.get("technique", "")) in label.techniques]
    return right, naming


def verdict(label: Label, alerts: Sequence[Mapping[str, Any]]) -> str:
    """``detected``, ``wrong_technique`` or ``missed`` (see the module docstring)."""
    right, naming = right_alerts(label, alerts)
    return "detected" if right else ("wrong_technique" if naming else "missed")


def find_captures(folders: Iterable[Path]) -> list[Path]:
    """Every capture file under ``folders`` (recursively), sorted by path."""
    out: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            out.append(folder)
            continue
        out += [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in CAPTURE_SUFFIXES]
    return sorted(set(out))


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarise(results: Sequence[CaptureResult]) -> dict[str, Any]:
    """Per attack type: captures, detected, wrong technique, missed, technique accuracy (detected
    over captures whose attacker was named), median delay; plus totals and benign alerts."""
    types: dict[str, dict[str, Any]] = {}
    for r in results:
        if r.label is None:
            continue
        t = types.setdefault(r.label.attack_type, {"captures": 0, **{v: 0 for v in VERDICTS}, "_delays": []})
        t["captures"] += 1
        t[r.verdict] += 1
        if r.delay_ms is not None:
            t["_delays"].append(r.delay_ms)
    for t in types.values():
        named = t["detected"] + t["wrong_technique"]
        t["technique_accuracy"] = round(t["detected"] / named, 3) if named else None
        t["median_delay_ms"] = _median(t.pop("_delays"))
    labelled = [r for r in results if r.label is not None]
    benign = [r for r in results if r.label is None and not r.error]
    delays = [r.delay_ms for r in labelled if r.delay_ms is not None]
    return {
        "attack_types": dict(sorted(types.items())),
        "labelled": len(labelled),
        **{v: sum(1 for r in labelled if r.verdict == v) for v in VERDICTS},
        "median_delay_ms": _median(delays),
        "benign_captures": len(benign),
        "benign_alerts": sum(len(r.alerts) for r in benign),
        "benign_captures_alerting": sum(1 for r in benign if r.alerts),
        "errors": sum(1 for r in results if r.error),
        "skipped": _sum_skips(results),
    }


def _sum_skips(results: Sequence[CaptureResult]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in results:
        for reason, n in r.skipped.items():
            total[reason] = total.get(reason, 0) + n
    return dict(sorted(total.items()))
