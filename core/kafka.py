"""Kafka client settings shared by every role, and topic creation.

confluent-kafka is imported only inside the functions, so the core still imports without it.
"""

from __future__ import annotations

from typing import Any, Mapping

from finsa.errors import BrokerError

#: Producer settings for at-least-once delivery without duplicates from retries.
PRODUCER_DEFAULTS = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 20,
    "compression.type": "none",
    "message.max.bytes": 16 * 1024 * 1024,
}


def producer_config(bootstrap: str, client_id: str, extra: Mapping[str, object] | None = None) -> dict:
    return {"bootstrap.servers": bootstrap, "client.id": client_id, **PRODUCER_DEFAULTS, **(extra or {})}


def ensure_topics(bootstrap: str, topics: Mapping[str, int], timeout_s: float = 15.0,
                  extra: Mapping[str, Any] | None = None) -> list[str]:
    """Create the topics (name -> partitions) that do not exist yet; return the ones created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except Exception as exc:  # noqa: BLE001 - KafkaException and transport errors: a BrokerError
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from None
    wanted = [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in topics.items()
              if name not in existing]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout_s)
            created.append(name)
        except Exception as exc:  # noqa: BLE001 - already exists is fine; anything else a BrokerError
            if "exist" not in str(exc).lower():
                raise BrokerError(f"cannot create topic {name}: {exc}") from None
    return created
