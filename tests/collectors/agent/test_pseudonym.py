from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from finsa import wire
from finsa.collectors.agent.pseudonym import Pseudonymiser, internal_mask, load_key
from finsa.errors import ConfigError

KEY = bytes(range(32))
NETS = ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"]
EVERYTHING = Pseudonymiser(KEY, ["0.0.0.0/0", "::/0"])  # shared: its caches make hypothesis quick


def _common_prefix_bits(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) * 8 - x.bit_length()


def _v4(n: int) -> str:
    return str(ipaddress.IPv4Address((10 << 24) | n))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, (1 << 24) - 1), st.integers(0, (1 << 24) - 1))
def test_ipv4_prefix_length_is_preserved_exactly(a: int, b: int) -> None:
    p = EVERYTHING
    ips = wire.ips_from_strings([_v4(a), _v4(b)])
    out = p.apply(ips)
    assert _common_prefix_bits(out[0, 12:].tobytes(), out[1, 12:].tobytes()) == \
        _common_prefix_bits(ips[0, 12:].tobytes(), ips[1, 12:].tobytes())
    assert (out[:, :12] == ips[:, :12]).all()  # IPv4 stays IPv4-mapped


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16))
def test_ipv6_prefix_length_is_preserved_exactly(a: bytes, b: bytes) -> None:
    a, b = b"\xfd" + a[1:], b"\xfd" + b[1:]
    out = EVERYTHING.apply(np.frombuffer(a + b, dtype=np.uint8).reshape(2, 16))
    assert _common_prefix_bits(out[0].tobytes(), out[1].tobytes()) == _common_prefix_bits(a, b)


def test_a_slash24_stays_one_slash24_and_hosts_stay_distinct() -> None:
    p = Pseudonymiser(KEY, NETS)
    ips = wire.ips_from_strings([f"10.20.30.{i}" for i in range(256)])
    out = p.apply(ips)
    assert len({bytes(r[12:15]) for r in out}) == 1
    assert len({bytes(r) for r in out}) == 256
    assert bytes(out[0, 12:15]) != bytes(ips[0, 12:15])


def test_same_key_same_pseudonym_across_instances_and_batches() -> None:
    ips = wire.ips_from_strings(["10.1.2.3", "192.168.7.7", "fd00::1"])
    first = Pseudonymiser(KEY, NETS).apply(ips)
    again = Pseudonymiser(KEY, NETS)
    again.apply(wire.ips_from_strings(["10.9.9.9"]))  # warm the caches with something else
    assert (again.apply(ips) == first).all()
    assert (again.apply(ips[::-1]) == first[::-1]).all()


def test_different_keys_give_different_pseudonyms() -> None:
    ips = wire.ips_from_strings([f"10.0.{i}.{i}" for i in range(50)] + ["fd00::5"])
    a = Pseudonymiser(KEY, NETS).apply(ips)
    b = Pseudonymiser(bytes(32), NETS).apply(ips)
    assert (a != b).any(axis=1).sum() >= 45


def test_external_addresses_are_untouched() -> None:
    texts = ["192.0.2.1", "8.8.8.8", "2001:db8::1", "11.0.0.1", "", "10.0.0.1"]
    ips = wire.ips_from_strings(texts)
    out = p_out = Pseudonymiser(KEY, NETS).apply(ips)
    assert wire.ips_to_strings(out[:5]) == texts[:5]
    assert wire.ips_to_strings(p_out[5:]) != ["10.0.0.1"]
    assert list(internal_mask(ips, NETS)) == [False, False, False, False, False, True]


def test_ipv6_is_mapped_within_128_bits_and_ipv4_never_becomes_ipv6() -> None:
    p = Pseudonymiser(KEY, NETS)
    out = wire.ips_to_strings(p.apply(wire.ips_from_strings(["fd00::1", "fd00::2", "10.0.0.1"])))
    assert ":" in out[0] and out[0] != "fd00::1" and out[0].rsplit(":", 1)[0] == out[1].rsplit(":", 1)[0]
    assert "." in out[2] and ":" not in out[2]


def test_columns_and_repr_never_show_the_key() -> None:
    p = Pseudonymiser(KEY, NETS)
    batch = wire.FLOW.make_batch({"src_ip": ["10.0.0.1"], "dst_ip": ["8.8.8.8"], "src_port": [1]})
    cols = p.apply_columns(batch.columns)
    assert wire.ips_to_strings(cols["dst_ip"]) == ["8.8.8.8"] and wire.ips_to_strings(cols["src_ip"]) != ["10.0.0.1"]
    assert KEY.hex() not in repr(p) and "Pseudonymiser" in repr(p)


def test_key_file_is_checked_without_showing_it(tmp_path) -> None:
    good = tmp_path / "k"
    good.write_text(KEY.hex() + "\n")
    assert load_key(good) == KEY
    short = tmp_path / "short"
    short.write_text("ab" * 16)
    with pytest.raises(ConfigError, match="32 bytes"):
        load_key(short)
    bad = tmp_path / "bad"
    bad.write_text("zz" * 32)
    with pytest.raises(ConfigError) as err:
        load_key(bad)
    assert "zz" not in str(err.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_key(tmp_path / "missing")
