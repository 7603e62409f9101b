"""The collector agent an institution deploys: meter, pseudonymise, spool, publish.

Data path: each source's flow batches go through :meth:`Agent.submit`, which pseudonymises the
addresses inside ``internal_networks`` (:mod:`finsa.collectors.agent.pseudonym`), encodes the batch and
writes it to the on-disk spool (:mod:`finsa.collectors.agent.spool`) *before* anything is sent. The
:class:`~finsa.collectors.agent.spool_sender.SpoolSender` thread publishes from the spool in order and
releases a batch only when the broker acknowledged it, so while the sector's broker is away
batches wait on disk and go out in order when it returns (at-least-once; the batch ids make the
storage writes idempotent). A heartbeat record goes to ``finsa.heartbeats.v1`` every
``heartbeat_interval_s``; metrics are served on ``metrics_listen``.

:meth:`Agent.reload` re-reads the config file (on SIGHUP or when the file changed): a valid one
is swapped in (pseudonymisation, broker, spool limits, heartbeat interval; sources and the spool
directory take effect at the next start), an invalid one is refused with its problems logged and
the running config kept.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from finsa import __version__, wire
from finsa.collectors.agent.config import AgentConfig, load_agent_config
from finsa.collectors.agent.metrics_http import MetricsServer
from finsa.collectors.agent.sources import ExportSource, LiveSource, LogSource, PcapSource, Source
from finsa.collectors.agent.pseudonym import Pseudonymiser, load_key
from finsa.collectors.agent.spool import Spool
from finsa.collectors.agent.spool_sender import SpoolSender, pack_spooled
from finsa.errors import ConfigError

if TYPE_CHECKING:  # imported when a packet ring is configured, see Agent.start
    from finsa.collectors.agent.endpoint import LocalEndpoint
from finsa.metrics import REGISTRY
from finsa.watch import FileWatcher

__all__ = ["Agent"]

log = logging.getLogger("finsa.agent")
FLOWS = REGISTRY.counter("finsa_agent_flows_total", "Flows handed to the agent's spool, by outcome", ["outcome"])
FLOW_PACKETS = REGISTRY.counter("finsa_agent_flow_packets_total", "Packets counted in the flows the agent spooled")
FLOW_BYTES = REGISTRY.counter("finsa_agent_flow_bytes_total", "Bytes counted in the flows the agent spooled")
HEARTBEATS = REGISTRY.counter("finsa_agent_heartbeats_total", "Heartbeats, by outcome", ["outcome"])
ARP_BINDINGS = REGISTRY.counter("finsa_agent_arp_bindings_total", "ARP bindings (address, MAC) spooled")
ALERTS = REGISTRY.counter("finsa_agent_forwarded_alerts_total", "Forwarded IDS alerts (Zeek, Suricata) spooled")
RELOADS = REGISTRY.counter("finsa_agent_reloads_total", "Config reloads, by outcome", ["outcome"])


def _metric_total(name: str) -> float:
    try:
        return REGISTRY.get(name).total()
    except KeyError:  # that component is not loaded in this process
        return 0.0


def _pseudonymiser(config: AgentConfig) -> Pseudonymiser | None:
    if not config.internal_networks or config.pseudonymisation_key_file is None:
        return None
    return Pseudonymiser(load_key(config.pseudonymisation_key_file), config.internal_networks)


def _signing_keys(config: AgentConfig) -> dict[str, bytes]:
    """{institution: key} when the agent signs its batches, else empty."""
    if config.batch_signing_key_file is None:
        return {}
    return {config.institution_id: load_key(config.batch_signing_key_file)}


def _pseudonymise_texts(pseudo: Pseudonymiser, texts: np.ndarray) -> np.ndarray:
    """Address texts (``a``, ``a:port``, ``[v6]:port``) with internal addresses pseudonymised."""
    out = texts.copy()
    for text in set(texts.tolist()):
        addr, port = str(text), ""
        if addr.startswith("["):
            addr, _, port = addr[1:].partition("]")
        elif addr.count(":") == 1:
            addr, port = addr.split(":")
            port = ":" + port
        try:
            raw = wire.ips_from_strings([addr])
        except wire.WireFormatError:
            continue  # not an address (a service or institution name): kept
        mapped = wire.ips_to_strings(pseudo.apply(raw))[0]
        new = (f"[{mapped}]" if port and ":" in mapped else mapped) + port
        out[texts == text] = new
    return out


def _pseudonymise_alert(pseudo: Pseudonymiser, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**columns, "entity": _pseudonymise_texts(pseudo, columns["entity"]),
            "target": _pseudonymise_texts(pseudo, columns["target"])}


def _load_with_pseudonymiser(path: Path) -> tuple[AgentConfig, Pseudonymiser | None]:
    """A config file and the pseudonymiser it asks for (ConfigError when either is refused)."""
    config = load_agent_config(path)
    return config, _pseudonymiser(config)


def _count_reload(outcome: str) -> None:
    RELOADS.inc(outcome="refused" if outcome in ("invalid", "unreadable") else outcome)


class Agent:
    """One institution's collector agent (inert until :meth:`start`)."""

    def __init__(self, config: AgentConfig, config_path: str | Path | None = None,
                 retry_s: float = 1.0) -> None:
        self.config, self.config_path = config, Path(config_path) if config_path else None
        self._pseudo = _pseudonymiser(config)
        self._pseudo_lock = threading.Lock()
        self.spool = Spool(config.spool.directory, config.spool.max_bytes, config.spool.max_batches,
                           config.spool.segment_bytes)
        self.sender = SpoolSender(self.spool, config.broker.bootstrap, self._topics(config),
                                  config.broker.client_settings(), client_id=f"finsa-agent-{config.sensor_id}",
                                  retry_s=retry_s, message_timeout_ms=config.broker.message_timeout_ms,
                                  on_tick=self._tick, signing_keys=_signing_keys(config))
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ring = _packet_ring(config)
        self._pcap: LocalEndpoint | None = None
        self._sources: list[Source] = self._make_sources(config)
        self._metrics: MetricsServer | None = None
        self._watcher: FileWatcher | None = None
        if self.config_path is not None:
            self._watcher = FileWatcher(self.config_path, _load_with_pseudonymiser, lambda new: self._apply(*new),
                                        on_outcome=_count_reload)
            self._watcher.mark()
        self._next_heartbeat = 0.0
        self.totals = {"flows": 0, "packets": 0, "dropped_batches": 0}

    @staticmethod
    def _topics(config: AgentConfig) -> dict[str, int]:
        return {wire.TOPICS["flows"]: config.broker.partitions, wire.TOPICS["heartbeats"]: 1,
                wire.TOPICS["alerts"]: config.broker.partitions}

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, sources: bool = True) -> "Agent":
        """Open the spool, start sending, serve metrics and (``sources``) start metering."""
        self.spool.open()
        if self.config.metrics_listen:
            host, _, port = self.config.metrics_listen.rpartition(":")
            self._metrics = MetricsServer(host, int(port)).start()
        ring_settings = self.config.packet_ring
        if self.ring is not None and ring_settings is not None:
            from finsa.collectors.agent.endpoint import LocalEndpoint

            host, _, port = ring_settings.listen.rpartition(":")
            token = ring_settings.token_file.read_text().strip()
            self._pcap = LocalEndpoint(self.ring, host.strip("[]"), int(port), token, self._pseudo,
                                       ring_settings.web_origin).start()
        sender = threading.Thread(target=self.sender.run, args=(self.stop_event,), daemon=True, name="agent-sender")
        sender.start()
        self._threads.append(sender)
        if sources:
            self._start_sources()
        else:
            self._sources = []
        log.info("agent %s/%s started, %d batches waiting in the spool", self.config.institution_id,
                 self.config.sensor_id, self.spool.depth_batches)
        return self

    def _make_sources(self, cfg: AgentConfig) -> list[Source]:
        """The configured sources, built (inert, validated) but not started."""
        src = cfg.sources
        out: list[Source] = []
        if src.pcap_files:
            out.append(PcapSource(src.pcap_files, cfg.institution_id, cfg.sensor_id, self.submit, src.speed,
                                  cfg.profile, src.rebase_time))
        out += [LiveSource(i, cfg.institution_id, cfg.sensor_id, self.submit, cfg.profile, self.ring)
                for i in src.interfaces]
        out += [ExportSource(listen, cfg.institution_id, cfg.sensor_id, self.submit) for listen in src.export_listen]
        for kind, paths in (("zeek", src.zeek_logs), ("suricata", src.suricata_eve)):
            if paths:
                out.append(LogSource(kind, paths, cfg.institution_id, cfg.sensor_id, self.submit,
                                     from_start=src.logs_from_start, follow=src.logs_follow,
                                     state_dir=src.logs_state_directory or cfg.spool.directory))
        return out

    def _start_sources(self) -> None:
        for source in self._sources:
            source.start()

    @property
    def sources_done(self) -> bool:
        return all(source.done for source in self._sources)

    @property
    def metrics_port(self) -> int | None:
        return self._metrics.port if self._metrics else None

    def stop(self, drain_timeout_s: float = 0.0, give_up=lambda: False) -> int:
        """Stop intake (every source hands what it metered to the spool), send the spool for up to
        ``drain_timeout_s``, then stop the sender and close the spool; returns batches left in the
        spool (they go out at the next start). ``give_up()`` true ends the drain early (a second
        stop signal)."""
        for source in self._sources:
            source.stop()
        if drain_timeout_s > 0:
            self.sender.wait_empty(drain_timeout_s, give_up)
        self.stop_event.set()
        for thread in self._threads:
            thread.join(10)
        self.spool.close()
        if self._metrics:
            self._metrics.stop()
        if self._pcap is not None:
            self._pcap.stop()
        return self.spool.depth_batches

    @property
    def pcap_port(self) -> int | None:
        return self._pcap.port if self._pcap else None

    # --- data path -------------------------------------------------------------------------

    def submit(self, batch: wire.RecordBatch) -> int:
        """Pseudonymise and spool a flow batch (or a forwarded ALERT batch: its entity and target
        addresses are pseudonymised too; it goes to the alert topic), split at ``max_batch_rows``;
        returns batches spooled."""
        if len(batch) == 0:
            return 0
        if self._pseudo is not None:
            with self._pseudo_lock:
                if batch.type is wire.ALERT:
                    columns = _pseudonymise_alert(self._pseudo, batch.columns)
                elif batch.type is wire.ARP:  # the claimed address, and the MAC (a device identifier)
                    columns = {**self._pseudo.apply_columns(batch.columns, ("ip",)),
                               "mac": self._pseudo.apply_macs(batch.columns["mac"])}
                else:
                    columns = self._pseudo.apply_columns(batch.columns)
                batch = wire.RecordBatch(batch.type, columns, batch.batch_id)
        step = self.config.max_batch_rows
        parts = [batch] if len(batch) <= step else [batch.take(slice(i, i + step)) for i in range(0, len(batch), step)]
        spooled = 0
        for part in parts:
            inst = part.columns.get("institution_id")
            key = str(inst[0] if inst is not None and len(inst) else self.config.institution_id).encode()
            if self.spool.append(part.batch_id, pack_spooled(key, wire.encode_batch(part, compress=self.config.compress_batches))):
                spooled += 1
                self._count(part)
            else:
                self.totals["dropped_batches"] += 1
                FLOWS.inc(len(part), outcome="dropped")
        return spooled

    def _count(self, part: wire.RecordBatch) -> None:
        if part.type is wire.ALERT:
            ALERTS.inc(len(part))
            return
        if part.type is wire.ARP:
            ARP_BINDINGS.inc(len(part))
            return
        FLOWS.inc(len(part), outcome="spooled")
        self.totals["flows"] += len(part)
        if part.type is wire.FLOW:
            packets = int(np.sum(part.columns["src2dst_packets"]) + np.sum(part.columns["dst2src_packets"]))
            FLOW_PACKETS.inc(packets)
            FLOW_BYTES.inc(int(np.sum(part.columns["src2dst_bytes"]) + np.sum(part.columns["dst2src_bytes"])))
            self.totals["packets"] += packets

    def heartbeat(self) -> wire.RecordBatch:
        """The agent's current heartbeat record.

        ``packets``: packets the flow meters read (or, before any meter ran, the packets in the
        spooled flows); ``drops``: packets the kernel dropped or the decoder skipped. Batches the
        full spool refused are counted in ``finsa_spool_dropped_total``, not here.
        """
        packets = int(_metric_total("finsa_collector_packets_total")) or self.totals["packets"]
        drops = int(_metric_total("finsa_capture_kernel_drops_total")
                    + _metric_total("finsa_collector_packets_skipped_total"))
        return wire.HEARTBEAT.make_batch({
            "time_ms": [int(time.time() * 1000)], "institution_id": [self.config.institution_id],
            "sensor_id": [self.config.sensor_id], "packets": [packets],
            "drops": [drops], "flows": [self.totals["flows"]],
            "spool_batches": [self.spool.depth_batches], "version": [__version__]})

    def _tick(self, sender: SpoolSender) -> None:
        """Runs in the sender thread after each step: heartbeats when due."""
        now = time.monotonic()
        if now >= self._next_heartbeat and sender.connected:
            self._next_heartbeat = now + self.config.heartbeat_interval_s
            HEARTBEATS.inc(outcome="sent" if sender.publish_now(self.heartbeat()) else "skipped")

    # --- configuration ---------------------------------------------------------------------

    def config_changed(self) -> bool:
        """True when the config file changed on disk since the last (re)load."""
        return self._watcher is not None and self._watcher.changed()

    def reload(self) -> bool:
        """Re-read the config file now (SIGHUP); swap it in when valid, else keep the running one (logged)."""
        if self._watcher is None or self.config_path is None:  # the watcher exists with a config path
            return False
        self._watcher.mark()
        try:
            new, pseudo = _load_with_pseudonymiser(self.config_path)
        except ConfigError as exc:
            _count_reload("invalid")
            log.error("config reload refused, keeping the running config: %s", exc)
            return False
        self._apply(new, pseudo)
        _count_reload("applied")
        return True

    def _apply(self, new: AgentConfig, pseudo: Pseudonymiser | None) -> None:
        old = self.config
        if (new.sources, new.spool.directory, new.institution_id, new.sensor_id) != \
                (old.sources, old.spool.directory, old.institution_id, old.sensor_id):
            log.warning("sources, spool directory and ids change at the next start only")
            new = new.model_copy(update={"sources": old.sources, "spool": new.spool.model_copy(
                update={"directory": old.spool.directory}), "institution_id": old.institution_id,
                "sensor_id": old.sensor_id})
        with self._pseudo_lock:
            self._pseudo = pseudo
        self.spool.max_bytes, self.spool.max_batches = new.spool.max_bytes, new.spool.max_batches
        if new.broker != old.broker:
            self.sender.configure(new.broker.bootstrap, new.broker.client_settings(), self.sender.client_id,
                                  new.broker.message_timeout_ms)
            self.sender.topics = self._topics(new)
            self.sender.request_reset()
        self.config = new
        self._next_heartbeat = 0.0
        log.info("config reloaded from %s", self.config_path)

    def run(self, reload_requested: threading.Event, poll_s: float = 1.0, exit_when_done: bool = True,
            shutdown=None, drain_timeout_s: float = 0.0) -> int:
        """Serve until ``stop_event`` (or ``shutdown`` asked to stop); reload on request or file
        change; with ``exit_when_done`` end once every file source finished and the spool is empty.
        Then stop, draining the spool for up to ``drain_timeout_s`` (``shutdown``'s remaining drain
        time when given). Returns batches left."""
        while not self.stop_event.wait(poll_s):
            if shutdown is not None and shutdown.requested:
                break
            if reload_requested.is_set():
                reload_requested.clear()
                self.reload()
            elif self._watcher is not None:
                self._watcher.poll()
            if exit_when_done and self._sources and self.sources_done and self.spool.depth_batches == 0:
                break
        if shutdown is not None:
            return self.stop(shutdown.remaining_s if shutdown.requested else drain_timeout_s,
                             shutdown.immediate.is_set)
        return self.stop(drain_timeout_s)


def _packet_ring(config: AgentConfig):
    if config.packet_ring is None:
        return None
    from finsa.collectors.agent.packet_ring import PacketRing

    return PacketRing(config.packet_ring.max_bytes, config.packet_ring.max_age_s)
