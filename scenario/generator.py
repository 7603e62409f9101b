"""A labeled, reproducible traffic scenario for several institutions of the financial sector.

:func:`generate_scenario` writes into ``out_dir``:

- ``institutions.toml``: the registry (:mod:`finsa.institutions` format) of twelve fictional
  institutions (three banks, three securities firms, three insurers, three payment institutions:
  at least k = 3 per subsector, so an institution's analyst sees k-anonymous sector aggregates
  by subsector; fourteen with ``attacks="sector"``);
- ``inventory.toml``: their public services (:func:`~finsa.scenario.world.inventory_toml`),
  which the early warner reads to warn institutions exposing what a campaign attacks;
- ``captures/<institution>.pcap``: what each institution's tap sees (Ethernet, microsecond
  timestamps): benign background traffic plus the attacks that touch it;
- ``manifest.json``: ``seed``, ``start_ms``, ``duration_s`` and the captures with their sensor
  names and packet counts (read back by :mod:`finsa.scenario_manifest`, the one reader);
- ``ground_truth.json``: ``seed``, ``start_ms``, ``end_ms`` and ``attacks``, each
  ``{"id", "attack", "technique", "attacker", "victims": [{"institution", "address", "start_ms",
  "end_ms"}], "start_ms", "end_ms"}``; ``attack`` is ``port_scan`` (T1046), ``syn_flood``
  (T1499.001) or ``ssh_bruteforce`` (T1110) (:mod:`~finsa.scenario.attacks`), and
  with ``attacks="all"`` (the default) also ``dns_tunnel`` (T1071.004), ``dga`` (T1568.002),
  ``beaconing`` (T1071) (:mod:`~finsa.scenario.threats`), ``exfiltration`` (T1048),
  ``lateral_movement`` (T1021) and ``web_attack`` (T1190)
  (:mod:`~finsa.scenario.intrusions`), and ``arp_spoof`` (T1557.002, raw ARP frames on
  one LAN beside routine ARP: :mod:`~finsa.scenario.arp`). The flood comes from a few hosts: its entry
  adds ``sources`` (every flooding address; ``attacker`` is the busiest); DNS-borne attacks add
  ``domain`` and ``relays`` (the resolver that carried their queries); ``lateral_movement``'s
  attacker is an internal host. Times are epoch ms; a victim's span covers every packet between
  the attack and that address, within the run.

``attacks="all"`` also adds routine benign traffic that resembles the attacks (backups,
monitoring, :mod:`~finsa.scenario.routine`), drawn from its own random stream:
``attacks="basic"`` gives exactly the files of the three basic attacks alone.

``attacks="none"`` writes the benign traffic of ``"all"`` (background, noise, routine look-alikes)
and no attack: an empty ground truth, for soaks that count false alerts per million benign flows
(``finsa scenario --attacks none --scale 20 --duration 600``, then ``finsa backtest``).

``attacks="sector"`` is the sector-wide campaign instead (:mod:`~finsa.scenario.campaign`):
fourteen institutions (:func:`~finsa.scenario.world.sector_world`, five of them payment
institutions), one actor scanning then brute-forcing the payment institutions one after another,
over an hour by default (``duration_s`` 3600, benign ``scale`` 0.05 to keep it light; replay it
at ``--speed 60``). Its ground truth adds ``campaigns``: ``[{"id", "actor", "subsector",
"attacks" (ids of its attack entries, which carry ``"campaign"``), "victims": [{"institution",
"start_ms", "end_ms"}] in visit order, "start_ms", "end_ms"}]``.

The same arguments give byte-identical files. Packets between two institutions (partner API
calls) are in both captures. Times start at ``start_ms`` (default Monday 2026-03-02 09:00 UTC);
a replayer rebases them to "now".

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as folder:
...     info = generate_scenario(folder, duration_s=20, scale=0.2)
...     sensor = load_manifest(folder)["captures"][0]["sensor"]
>>> [a["attack"] for a in info.ground_truth["attacks"]][:4], sensor
(['port_scan', 'syn_flood', 'ssh_bruteforce', 'dns_tunnel'], 'bank-a-tap1')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from finsa.collectors.pcap.writer import PcapWriter
from finsa.scenario import intrusions
from finsa.scenario import threats
from finsa.scenario.attacks import attacks as basic_attacks
from finsa.scenario.arp import arp_frames
from finsa.scenario.campaign import campaign_truth, sector_campaign
from finsa.scenario.noise import background_noise
from finsa.scenario.packets import Packets, encode_frames
from finsa.scenario.payloads import PayloadTable
from finsa.scenario.routine import routine_traffic
from finsa.scenario.traffic import Gen, benign_traffic
from finsa.scenario.world import (World, default_world, inventory_toml, ip_str, owner_mask, registry_toml,
                                                   sector_world)
from finsa.scenario_manifest import GROUND_TRUTH, MANIFEST, ScenarioError, load_ground_truth, load_manifest

__all__ = ["ScenarioInfo", "ScenarioError", "generate_scenario", "load_manifest", "load_ground_truth",
           "DEFAULT_START_MS", "parse_start", "ATTACK_SETS", "DEFAULTS"]

DEFAULT_START_MS = int(datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc).timestamp() * 1000)
REGISTRY = "institutions.toml"
DETECTORS, INVENTORY = "detectors.toml", "inventory.toml"
#: ``--attacks`` choices: every attack type (the default), the three basic attacks, the
#: hour-long sector-wide campaign, or none (the benign traffic of ``all`` alone: a soak).
ATTACK_SETS = ("all", "basic", "sector", "none")
#: Defaults of (duration_s, scale) per attack set.
DEFAULTS = {"all": (100.0, 1.0), "basic": (100.0, 1.0), "sector": (3600.0, 0.05), "none": (100.0, 1.0)}


@dataclass(frozen=True)
class ScenarioInfo:
    """What :func:`generate_scenario` wrote."""

    out_dir: Path
    manifest: dict
    ground_truth: dict

    @property
    def registry_path(self) -> Path:
        return self.out_dir / REGISTRY

    @property
    def capture_paths(self) -> dict[str, Path]:
        return {c["institution"]: self.out_dir / c["path"] for c in self.manifest["captures"]}

    @property
    def packets(self) -> int:
        return sum(c["packets"] for c in self.manifest["captures"])


def parse_start(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 instant (UTC when no offset is given)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ScenarioError(f"--start: not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def _check(seed: int, duration_s: float, start_ms: int, scale: float, attack_set: str) -> None:
    problems = []
    if attack_set not in ATTACK_SETS:
        problems.append(f"attacks must be one of {', '.join(ATTACK_SETS)}, not {attack_set!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"seed must be a non-negative integer, not {seed!r}")
    if not 1 <= duration_s <= 7 * 86400:
        problems.append(f"duration_s must be between 1 and 604800, not {duration_s!r}")
    if not 0 <= scale <= 100:
        problems.append(f"scale must be between 0 and 100, not {scale!r}")
    if start_ms < 0:
        problems.append("start must not be before 1970")
    if problems:
        raise ScenarioError("; ".join(problems))


def generate_scenario(out_dir: str | Path, seed: int = 7, duration_s: float | None = None,
                      start_ms: int | None = None, scale: float | None = None, attack_set: str = "all") -> ScenarioInfo:
    """Generate the scenario into ``out_dir`` (created if needed; our files are overwritten).

    ``attack_set`` is ``"all"``, ``"basic"`` or ``"sector"`` (see the module docstring);
    ``duration_s`` and ``scale`` default per set (:data:`DEFAULTS`).
    """
    start_ms = DEFAULT_START_MS if start_ms is None else int(start_ms)
    default_s, default_scale = DEFAULTS.get(attack_set, DEFAULTS["all"])
    duration_s = default_s if duration_s is None else duration_s
    scale = default_scale if scale is None else scale
    _check(seed, duration_s, start_ms, scale, attack_set)
    world = sector_world() if attack_set == "sector" else default_world()
    g = Gen(np.random.default_rng(seed), PayloadTable(), start_ms, float(duration_s))
    benign_traffic(g, world, scale)
    campaigns: list[dict] = []
    if attack_set == "sector":
        truth, campaign = sector_campaign(g, world)
        campaigns.append(campaign)
    elif attack_set == "none":
        truth = []
    else:
        truth = basic_attacks(g, world)
    background_noise(g, world, scale)
    lan_frames: dict[str, list[tuple[int, bytes]]] = {}
    if attack_set == "none":  # the benign side of "all" (routine look-alikes included), no attack
        routine_traffic(Gen(np.random.default_rng([seed, 2]), g.table, start_ms, float(duration_s), g.parts),
                        world, scale)
    if attack_set == "all":
        more = Gen(np.random.default_rng([seed, 2]), g.table, start_ms, float(duration_s), g.parts)
        routine_traffic(more, world, scale)
        truth += [threats.dns_tunnel(more, world), threats.dga(more, world), threats.beaconing(more, world),
                  intrusions.exfiltration(more, world), intrusions.lateral_movement(more, world),
                  intrusions.web_attack(more, world)]
        lan_frames, spoof = arp_frames(Gen(np.random.default_rng([seed, 3]), g.table, start_ms, float(duration_s)),
                                       world)
        if spoof is not None:
            truth.append(spoof)
    truth = _clip_truth([{"id": f"{e['attack']}-{k + 1}", **{x: v for x, v in e.items() if x != "id"}}
                         for k, e in enumerate(truth)], start_ms, start_ms + int(round(duration_s * 1000)))
    campaigns = [c for c in (campaign_truth(c, truth) for c in campaigns) if c is not None]
    packets = Packets.concat(g.parts).sorted()
    end_ms = start_ms + int(round(duration_s * 1000))
    inside = (packets.ts_ns >= start_ms * 1_000_000) & (packets.ts_ns < end_ms * 1_000_000)
    packets = packets.take(np.flatnonzero(inside))
    out = Path(out_dir)
    (out / "captures").mkdir(parents=True, exist_ok=True)
    (out / REGISTRY).write_text(registry_toml(world), encoding="utf-8")
    (out / INVENTORY).write_text(inventory_toml(world), encoding="utf-8")
    (out / DETECTORS).write_text(detectors_toml(world), encoding="utf-8")
    captures = _write_captures(out, world, packets, g.table, lan_frames, (start_ms * 1_000_000, end_ms * 1_000_000))
    manifest = {"seed": int(seed), "start_ms": start_ms, "duration_s": _number(duration_s), "scale": _number(scale),
                "attacks": attack_set, "registry": REGISTRY, "inventory": INVENTORY, "detectors": DETECTORS, "ground_truth": GROUND_TRUTH, "captures": captures}
    ground_truth = {"seed": int(seed), "start_ms": start_ms, "end_ms": end_ms, "attacks": truth}
    if attack_set == "sector":
        ground_truth["campaigns"] = campaigns
    _write_json(out / MANIFEST, manifest)
    _write_json(out / GROUND_TRUTH, ground_truth)
    return ScenarioInfo(out, manifest, ground_truth)


def detectors_toml(world: World) -> str:
    """The operator tuning of the scenario's sector (:mod:`finsa.detectors.config` format).

    The detectors that need local knowledge get it: the sector's own networks (so internal
    backups are not exfiltration and internal monitoring is not beaconing), and thresholds for a
    run compressed into minutes (a beacon every ~10 s, 15 MB uploads). The institutions'
    resolvers forwarding to the sector's upstream resolver are accepted: over an hour (the sector
    campaign), or at a small institution with few clients (the default world has
    three institutions per subsector), that forwarding is as regular as a beacon.
    """
    every = ", ".join(f'"{n}"' for inst in world.institutions for n in inst.networks)
    internal = ", ".join(f'"{inst.internal_net}"' for inst in world.institutions)
    upstream = [f'allow_destinations = ["{ip_str(world.upstream_resolver)}/32"]']
    return "\n".join([
        "# Detector tuning for a generated finsa scenario (finsa backtest/detect --scenario use it).", "",
        "[detectors.beaconing]", "enabled = true", "min_beacons = 5", "min_interval_ms = 5000",
        f"internal_networks = [{every}]", *upstream, "",
        "# the exfiltration's 15 MB start within 22 s: wherever the 1-minute bins fall on a replay's",
        "# wall clock, one of them holds half of it or more (7.5 MB), over this floor",
        "[detectors.exfiltration]", "enabled = true", "bulk_min_bytes = 6000000", "bin_ms = 60000",
        f"internal_networks = [{every}]", "",
        "[detectors.lateral]", "enabled = true", f"internal_networks = [{internal}]", ""])


def _clip_truth(entries: list[dict], start_ms: int, end_ms: int) -> list[dict]:
    """Victim spans cut to the run (packets outside it are not written); empty ones dropped."""
    out = []
    for e in entries:
        victims = [{**v, "start_ms": max(v["start_ms"], start_ms), "end_ms": min(v["end_ms"], end_ms)}
                   for v in e["victims"] if v["start_ms"] < end_ms and v["end_ms"] >= start_ms]
        if victims:
            out.append({**e, "victims": victims, "start_ms": min(v["start_ms"] for v in victims),
                        "end_ms": max(v["end_ms"] for v in victims)})
    return out


def _write_captures(out: Path, world: World, packets: Packets, table: PayloadTable,
                    lan_frames: dict[str, list[tuple[int, bytes]]], span_ns: tuple[int, int]) -> list[dict]:
    captures = []
    for inst in world.institutions:
        seen = owner_mask(packets.src, inst.networks) | owner_mask(packets.dst, inst.networks)
        mine = packets.take(np.flatnonzero(seen))
        src_local, dst_local = owner_mask(mine.src, inst.networks), owner_mask(mine.dst, inst.networks)
        buf, offsets, lengths = encode_frames(mine, table, src_local, dst_local)
        extra = [(t, f) for t, f in lan_frames.get(inst.id, []) if span_ns[0] <= t < span_ns[1]]
        path = f"captures/{inst.id}.pcap"
        with PcapWriter(out / path) as writer:
            _write_frames(writer, mine.ts_ns, buf, offsets, lengths, extra)
        captures.append({"institution": inst.id, "sensor": f"{inst.id}-tap1", "path": path,
                         "packets": len(mine) + len(extra)})
    return captures


def _write_frames(writer: PcapWriter, ts_ns: np.ndarray, buf: np.ndarray, offsets: np.ndarray,
                  lengths: np.ndarray, extra: Sequence[tuple[int, bytes]] = ()) -> None:
    """Frame by frame in time order (IP frames, and ``extra`` raw frames such as ARP merged in):
    cheaper than a gathered batch when a few large transfers dominate the bytes."""
    data = buf.tobytes()
    pending = list(extra)
    k = 0
    for ts, start, length in zip(ts_ns.tolist(), offsets.tolist(), lengths.tolist()):
        while k < len(pending) and pending[k][0] <= ts:
            writer.write(*pending[k])
            k += 1
        writer.write(ts, data[start:start + length])
    for frame in pending[k:]:
        writer.write(*frame)


def _number(value: float) -> int | float:
    """100.0 -> 100, so the API and the CLI (which parses floats) write the same manifest."""
    return int(value) if float(value).is_integer() else float(value)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
