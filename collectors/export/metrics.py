"""Counters of flow-export ingest (NetFlow v5/v9, IPFIX, sFlow v5), registered once.

Every malformed datagram or set is counted by reason and skipped; nothing on the decode path
logs per event.

>>> DATAGRAMS_SKIPPED.labels
('reason',)
"""

from __future__ import annotations

from finsa.metrics import REGISTRY

DATAGRAMS = REGISTRY.counter("finsa_export_datagrams_total", "Flow-export datagrams received", ["protocol"])
DATAGRAMS_SKIPPED = REGISTRY.counter(
    "finsa_export_datagrams_skipped_total",
    "Flow-export datagrams (or parts of them) skipped as malformed or unusable, by reason", ["reason"])
TEMPLATE_MISSES = REGISTRY.counter(
    "finsa_export_template_misses_total",
    "NetFlow v9 / IPFIX data sets whose template was unknown when they arrived", ["protocol"])
RECORDS = REGISTRY.counter("finsa_export_records_total", "Flow records decoded from export", ["protocol"])
SFLOW_COUNTER_SAMPLES = REGISTRY.counter(
    "finsa_export_sflow_counter_samples_total", "sFlow counter samples received (counted, not decoded)")
TEMPLATES = REGISTRY.counter(
    "finsa_export_templates_total", "Templates learned, refreshed or withdrawn", ["protocol", "event"])


def skip(reason: str, amount: int = 1) -> None:
    """Count ``amount`` skipped datagrams (or sets) for ``reason``."""
    DATAGRAMS_SKIPPED.inc(amount, reason=reason)
