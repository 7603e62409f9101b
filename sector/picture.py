"""The sector picture: what no single institution's SOC can see, as one object.

:class:`SectorPicture` ties the pure modules together and has no I/O beyond the intel files it
polls: the Faust worker feeds it decoded batches and writes out what :meth:`SectorPicture.tick`
returns. Alerts are enriched (:mod:`~finsa.sector.enrich`), linked into campaigns
(:mod:`~finsa.sector.campaigns`), turned into early warnings (:mod:`~finsa.sector.early_warning`,
:mod:`~finsa.sector.forecast`) and threat levels (:mod:`~finsa.sector.levels`); flows and
heartbeats feed the emergency watch (:mod:`~finsa.sector.emergencies`).

Time is flow time: ``tick(now_ms)`` defaults to the latest alert or flow time seen, so a replay
gives the same campaigns, warnings and levels as the live run. The whole object pickles (for
checkpoints; the GeoIP tables and cache are not part of the state). Redelivered alerts (same
``alert_id``) are ignored.

>>> from finsa import wire
>>> from finsa.institutions import parse_registry
>>> reg = parse_registry({"institution": [{"id": f"pay-{c}", "name": c, "subsector": "payment"} for c in "abc"]})
>>> sp = SectorPicture(reg, k=2)
>>> hit = lambda inst, t: wire.ALERT.make_batch({"alert_id": [f"{inst}{t}"], "time_ms": [t],
...     "institution_id": [inst], "entity": ["198.51.100.23"], "entity_kind": ["src_ip"],
...     "technique": ["T1046"], "severity": [3], "confidence": [0.9]})
>>> sp.observe_alerts(hit("pay-a", 0)); sp.observe_alerts(hit("pay-b", 60_000))
>>> update = sp.tick(120_000)
>>> [(w.institution_id, w.kind, "198.51.100.23" in w.indicators) for w in update.warnings]
[('pay-c', 'campaign_spread', True)]
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from finsa import wire
from finsa.metrics import REGISTRY
from finsa.institutions import Registry
from finsa.sector.campaigns import Campaign, CampaignTracker
from finsa.sector.early_warning import DriftWatch, EarlyWarning, SpreadWarner, forecast_warnings
from finsa.sector.emergencies import Emergency, HealthWatch
from finsa.sector.enrich import ENRICHED_COLUMNS, Asset, AssetMap, Enricher, Provider, ProviderMap, load_inventory
from finsa.sector.forecast import VolumeForecaster
from finsa.sector.geo import GeoLookup
from finsa.sector.indicators import BlockEntry, blocklist_from_campaigns
from finsa.sector.intel_feeds import IntelFeed, IntelIndex
from finsa.sector.levels import LevelRow, ThreatLevels

__all__ = ["SectorPicture", "SectorUpdate"]

ALERTS = REGISTRY.counter("finsa_sector_alerts_total", "Alerts fed to the sector picture, by outcome", ["outcome"])
WARNINGS = REGISTRY.counter("finsa_sector_warnings_total", "Early warnings issued, by kind", ["kind"])
MAX_LEVEL_STEPS = 60  # level minutes computed at most per tick when flow time jumps


@dataclass
class SectorUpdate:
    """What changed since the previous tick."""

    time_ms: int
    campaigns: list[Campaign] = field(default_factory=list)  # new or updated (snapshots)
    warnings: list[EarlyWarning] = field(default_factory=list)
    levels: list[LevelRow] = field(default_factory=list)
    emergencies: list[Emergency] = field(default_factory=list)

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """Plain rows per table: campaigns, warnings, levels, emergencies."""
        return {"campaigns": [c.row() for c in self.campaigns], "warnings": [w.row() for w in self.warnings],
                "levels": [r.row() for r in self.levels], "emergencies": [e.row() for e in self.emergencies]}

    def __bool__(self) -> bool:
        return bool(self.campaigns or self.warnings or self.levels or self.emergencies)


#: Never on a sector blocklist: private, loopback and link-local space (members' internal networks).
_INTERNAL = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "fc00::/7", "fe80::/10", "::1/128"))


def _is_member_address(value: str, registry: Registry) -> bool:
    """True for an address or prefix in private space or overlapping an institution's networks."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    members = (ipaddress.ip_network(n, strict=False) for inst in registry.institution for n in inst.networks)
    return any(net.version == other.version and net.overlaps(other) for other in (*_INTERNAL, *members))


class SectorPicture:
    """Facade over enrichment, campaigns, early warning, levels and emergencies."""

    def __init__(self, registry: Registry, assets: Sequence[Asset] | None = None,
                 providers: Sequence[Provider] | None = None, intel: IntelFeed | IntelIndex | None = None,
                 k: int = 2, campaign_window_ms: int = 3_600_000, horizon_min: int = 15,
                 forecast_thresholds: dict[str, float] | None = None, drift_threshold: float = 0.8,
                 step_ms: int = 60_000, intel_poll_ms: int = 30_000, geo: GeoLookup | None = None,
                 health: HealthWatch | None = None, max_seen_alerts: int = 200_000) -> None:
        self.registry = registry
        self.enricher = Enricher(registry, assets or (), providers or (), geo)
        self.intel = intel
        self.tracker = CampaignTracker(window_ms=campaign_window_ms, min_institutions=2)
        self.spread = SpreadWarner(registry, self.enricher.assets, k=k)
        self.forecaster = VolumeForecaster(step_ms=step_ms, horizon_steps=horizon_min,
                                           thresholds=forecast_thresholds or {"subsector": 30.0, "technique": 40.0})
        self.drift = DriftWatch(registry, threshold=drift_threshold)
        self.levels = ThreatLevels(registry, self.enricher.providers, step_ms=step_ms)
        self.health = health or HealthWatch(registry, step_ms=step_ms)
        self.step_ms, self.intel_poll_ms, self.max_seen_alerts = step_ms, intel_poll_ms, max_seen_alerts
        self.now_ms = 0
        self._seen: dict[str, None] = {}
        self._pending_campaigns: dict[str, Campaign] = {}
        self._pending_warnings: list[EarlyWarning] = []
        self._level_step: int | None = None
        self._intel_polled_ms: int | None = None

    @classmethod
    def from_files(cls, registry_path: str | Path, inventory_path: str | Path | None = None,
                   **options: Any) -> "SectorPicture":
        """A picture of the institutions file's sector, with the inventory file's assets and
        providers when one is given (validated against the registry: an unknown institution is
        refused with its field)."""
        from finsa.institutions import load_registry

        registry = load_registry(registry_path)
        if inventory_path is None:
            return cls(registry, **options)
        inventory = load_inventory(inventory_path, registry)
        return cls(registry, assets=inventory.asset, providers=inventory.provider, **options)

    def use_configuration(self, registry: Registry, assets: AssetMap | None = None,
                          providers: ProviderMap | None = None) -> None:
        """The sector's institutions (and inventory, when given) from now on, keeping everything
        learned: campaigns, warnings issued, levels' history, baselines. An institution added to
        the registry is enriched, warned and levelled from its next alert; one removed keeps its
        history but is no longer warned."""
        self.registry = registry
        self.enricher.use_registry(registry)
        if assets is not None:
            self.enricher.assets = self.spread.assets = assets
        if providers is not None:
            self.enricher.providers = providers
        self.spread.use_registry(registry)
        self.drift.use_registry(registry)
        self.levels.use_registry(registry, providers)
        self.health.use_registry(registry)

    # --- inputs ---------------------------------------------------------------------------

    def _index(self) -> IntelIndex | None:
        return self.intel.index if isinstance(self.intel, IntelFeed) else self.intel

    def enriched_rows(self, batch: wire.RecordBatch) -> list[dict[str, Any]]:
        """Alert rows of a batch with the enrichment columns, in (time, alert_id) order."""
        cols = batch.columns
        extra = self.enricher.enrich(cols, self._index(), self.now_ms)
        names = [*wire.ALERT.names, *ENRICHED_COLUMNS]
        lists = [cols[n].tolist() for n in wire.ALERT.names] + [extra[n].tolist() for n in ENRICHED_COLUMNS]
        rows = [dict(zip(names, values)) for values in zip(*lists)]
        return sorted(rows, key=lambda r: (r["time_ms"], r["alert_id"]))

    def observe_alerts(self, batch: wire.RecordBatch) -> None:
        if len(batch) == 0:
            return
        fresh = []
        for row in self.enriched_rows(batch):
            aid = row["alert_id"]
            if aid and aid in self._seen:
                ALERTS.inc(outcome="duplicate")
                continue
            if aid:
                self._seen[aid] = None
                if len(self._seen) > self.max_seen_alerts:
                    del self._seen[next(iter(self._seen))]
            fresh.append(row)
        for row in fresh:
            self.levels.observe(row)
            self.drift.observe(row)
            self.forecaster.add(f"subsector:{row['subsector']}", row["time_ms"])
            if row["technique"]:
                self.forecaster.add(f"technique:{row['technique']}", row["time_ms"])
            self.now_ms = max(self.now_ms, int(row["time_ms"]))
        ALERTS.inc(len(fresh), outcome="new")
        self.tracker.observe(fresh)
        for c in self.tracker.drain_updates():
            for old in c.merged_from:
                self._pending_campaigns.pop(old, None)
            self._pending_campaigns[c.campaign_id] = c
            self._warn(self.spread.check(c))

    def observe_flows(self, batch: wire.RecordBatch) -> None:
        if len(batch) == 0:
            return
        times = batch.columns["last_seen_ms"]
        self.health.observe_flows(batch.columns["institution_id"], times)
        self.now_ms = max(self.now_ms, int(times.max()))

    def observe_heartbeats(self, batch: wire.RecordBatch, arrival_ms: int | None = None) -> None:
        """Heartbeats; ``arrival_ms`` is the worker's clock when they arrived (default: their own time)."""
        if len(batch):
            self.health.observe_heartbeats(batch.columns, arrival_ms)

    def _warn(self, warnings: Iterable[EarlyWarning]) -> None:
        for w in warnings:
            self.levels.note_warning(w)
            self._pending_warnings.append(w)
            WARNINGS.inc(kind=w.kind)

    # --- output ---------------------------------------------------------------------------

    def tick(self, now_ms: int | None = None) -> SectorUpdate:
        """Advance to ``now_ms`` (default: the latest flow or alert time) and drain what changed."""
        now = int(self.now_ms if now_ms is None else now_ms)
        self.now_ms = max(self.now_ms, now)
        self._poll_intel(now)
        for crossing in self.forecaster.advance(now):
            self._warn(forecast_warnings(crossing, self.registry))
        step = now // self.step_ms
        levels: list[LevelRow] = []
        emergencies = self.health.check(now)
        if self._level_step is None or step > self._level_step:
            self._warn(self.drift.check(now))
            first = step if self._level_step is None else max(self._level_step + 1, step - MAX_LEVEL_STEPS + 1)
            campaigns = self.tracker.campaigns()
            active = self.health.active_by_institution()
            for s in range(first, step + 1):
                levels += self.levels.compute(s * self.step_ms, campaigns, active)
            self._level_step = step
            self.tracker.expire(now)
            self.spread.forget(c.campaign_id for c in self.tracker.clusters.values())
        snapshots = [copy.deepcopy(c) for c in self._pending_campaigns.values()]  # later alerts must not alter them
        update = SectorUpdate(now, snapshots, self._pending_warnings, levels, emergencies)
        self._pending_campaigns, self._pending_warnings = {}, []
        return update

    def _poll_intel(self, now_ms: int) -> None:
        if isinstance(self.intel, IntelFeed) and (
                self._intel_polled_ms is None or now_ms - self._intel_polled_ms >= self.intel_poll_ms):
            self.intel.refresh()
            self._intel_polled_ms = now_ms

    # --- queries --------------------------------------------------------------------------

    def campaigns(self) -> list[Campaign]:
        return self.tracker.campaigns()

    def lead_times(self, campaign_id: str) -> dict[str, int]:
        """Institution -> ms between its campaign_spread warning and its first hit."""
        c = self.tracker.clusters.get(campaign_id)
        return self.spread.lead_times(c) if c is not None else {}

    def blocklist(self, now_ms: int | None = None, ttl_ms: int = 7 * 86_400_000) -> list[BlockEntry]:
        """What the sector should block: campaign indicators, never a member's own addresses.

        A campaign can gather internal hosts (a beaconing workstation, a lateral mover); telling
        every institution to block those, or their /24, would cut members off from themselves.
        """
        entries = blocklist_from_campaigns(self.tracker.campaigns(), self.now_ms if now_ms is None else now_ms, ttl_ms)
        return [e for e in entries if not (e.kind in ("ip", "net") and _is_member_address(e.value, self.registry))]
