"""ARP bindings are stored like flows: their own table, idempotent per batch, readable per institution."""

from __future__ import annotations

from finsa.storage.backend import open_store
from finsa.wire import ARP


def test_bindings_are_stored_once_and_answer_who_had_an_address() -> None:
    with open_store() as store:
        assert "0040_create_arp_bindings" in store.migrate()
        batch = ARP.make_batch({"first_seen_ms": [1_770_000_000_000, 1_770_000_060_000],
                                "last_seen_ms": [1_770_000_001_000, 1_770_000_061_000],
                                "institution_id": "bank-a", "sensor_id": "bank-a-tap1",
                                "ip": ["172.16.0.1", "172.16.0.1"], "mac": [0x00260B310733, 0x0025B3BF91EE],
                                "replies": [1, 3]})
        assert store.insert(batch) and not store.insert(batch)
        rows = store.query("SELECT MACNumToString(mac) AS mac, replies, toString(first_seen) AS t FROM arp_bindings "
                           "WHERE ip = toIPv6('::ffff:172.16.0.1') ORDER BY first_seen").rows
        assert rows == [("00:26:0B:31:07:33", 1, "2026-02-02 02:40:00.000"),
                        ("00:25:B3:BF:91:EE", 3, "2026-02-02 02:41:00.000")]
