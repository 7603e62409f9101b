"""rows: the one sort of a chunk (sort_keys) and the canonical key hash."""

from __future__ import annotations

import numpy as np
import pytest

from finsa.collectors.meter.decode import decode_packets
from finsa.collectors.pcap.capture import PacketBatch
from finsa.collectors.meter.keyed_rows import FIRST_COLUMNS, _FirstRows, _merged_order, key_hashes, sort_keys


@pytest.mark.parametrize("n", [0, 1, 2, 3, 100, 70_000])
def test_sort_keys_is_the_stable_argsort(n: int) -> None:
    rng = np.random.default_rng(n)
    hashes = rng.integers(0, 2**63, max(n // 5, 1), dtype=np.int64).astype(np.uint64)[rng.integers(0, max(n // 5, 1), n)]
    keys = sort_keys(hashes)
    assert keys.order.tolist() == np.argsort(hashes, kind="stable").tolist()
    assert keys.uniq.tolist() == np.unique(hashes).tolist()
    assert (keys.uniq[keys.group] == hashes[keys.order]).all()


def test_sort_keys_falls_back_when_hashes_share_their_high_bits() -> None:
    # hashes that differ only in the low bits the packet number replaces
    hashes = np.array([7 << 40 | 2, 7 << 40 | 1, 7 << 40 | 2, 7 << 40 | 1, 5], dtype=np.uint64)
    keys = sort_keys(hashes)
    assert keys.order.tolist() == [4, 1, 3, 0, 2]
    assert keys.group.tolist() == [0, 1, 1, 2, 2]


def test_merged_order_puts_each_pseudo_row_first_in_its_group() -> None:
    keys = sort_keys(np.array([9, 3, 9, 5], dtype=np.uint64))  # groups 3, 5, 9
    order = _merged_order(keys, np.array([True, False, True]))
    # rows: pseudo 0 (hash 3), pseudo 1 (hash 9), then packets 2.. (packet i is row 2 + i)
    assert order.tolist() == [0, 3, 5, 1, 2, 4]


def test_first_rows_come_from_the_table_flow_or_the_packet() -> None:
    rng = np.random.default_rng(5)
    n_pseudo, n_packets = 40, 300

    def columns(n: int) -> dict[str, np.ndarray]:
        return {"src_ip": rng.integers(0, 256, (n, 16), dtype=np.uint8), "dst_ip": rng.integers(0, 256, (n, 16), dtype=np.uint8),
                "src_port": rng.integers(0, 65536, n, dtype=np.uint16), "dst_port": rng.integers(0, 65536, n, dtype=np.uint16),
                "vlan_id": rng.integers(0, 4096, n, dtype=np.uint16), "ip_version": rng.choice([4, 6], n).astype(np.uint8),
                "tunnel_kind": rng.integers(0, 6, n, dtype=np.uint8)}

    table, packets = columns(n_pseudo), columns(n_packets)
    order = rng.permutation(n_pseudo + n_packets)
    rows = np.sort(rng.choice(len(order), 120, replace=False))
    got = _FirstRows(order, n_pseudo, table, type("Decoded", (), {**packets, "__len__": lambda self: n_packets})()).gather_all(rows)
    assert list(got) == list(FIRST_COLUMNS)
    for name, col in got.items():
        want = [table[name][q] if q < n_pseudo else packets[name][q - n_pseudo] for q in order[rows]]
        assert col.dtype == table[name].dtype and col.shape == (len(rows),) + table[name].shape[1:]
        assert col.tolist() == np.array(want).tolist(), name


def _frame(src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = bytes.fromhex("450000280000400040060000") + bytes(map(int, src.split("."))) + bytes(map(int, dst.split(".")))
    tcp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes(8) + b"\x50\x02" + bytes(6)
    return bytes(12) + b"\x08\x00" + ip + tcp


def test_key_hash_is_the_same_both_ways_and_differs_by_port() -> None:
    frames = [_frame("10.0.0.1", "10.0.0.2", 1234, 80), _frame("10.0.0.2", "10.0.0.1", 80, 1234),
              _frame("10.0.0.1", "10.0.0.2", 1235, 80)]
    decoded = decode_packets(PacketBatch.from_packets([(i, f) for i, f in enumerate(frames)]))
    hashes, dir_lo = key_hashes(decoded, vlan_in_key=True)
    assert hashes[0] == hashes[1] != hashes[2]
    assert dir_lo.tolist() == [True, False, True]
