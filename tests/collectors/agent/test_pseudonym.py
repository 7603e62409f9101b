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
    assert bytes(out[0, 12:15]) != bytes(ips[0, 12:15]) and out[0, 12] == 10  # another /24 of 10/8


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


NESTED = ["10.0.0.0/8", "10.2.0.0/16", "192.168.0.0/16", "192.168.5.0/24", "192.168.5.128/28",
          "198.51.100.0/24", "203.0.113.9/32", "fd00::/8", "fd00:1:2::/48"]
_NETS = [ipaddress.ip_network(n) for n in NESTED]
_NESTED_P = Pseudonymiser(KEY, NESTED)  # shared: its caches make hypothesis quick


def _longest(text: str) -> str | None:
    """The longest internal network holding ``text`` (the one whose prefix its pseudonym keeps)."""
    address = ipaddress.ip_address(text)
    inside = [n for n in _NETS if n.version == address.version and address in n]
    return str(max(inside, key=lambda n: n.prefixlen)) if inside else None


def _sample(seed: int) -> list[str]:
    """Addresses inside each network (and the nested ones), plus external ones."""
    rng = np.random.default_rng(seed)
    out = []
    for net in _NETS:
        for _ in range(40):
            host = int(rng.integers(0, 2 ** min(net.max_prefixlen - net.prefixlen, 62), dtype=np.int64))
            out.append(str(net.network_address + host))
    return out + ["8.8.8.8", "11.0.0.1", "192.169.0.1", "2001:db8::1", "fe80::1"]


def test_every_pseudonym_stays_in_its_own_longest_matching_network() -> None:
    p = Pseudonymiser(KEY, NESTED)
    texts = _sample(1)
    out = wire.ips_to_strings(p.apply(wire.ips_from_strings(texts)))
    assert [_longest(t) for t in out] == [_longest(t) for t in texts]
    changed = [t for t, o in zip(texts, out) if t != o]
    assert len(changed) >= len(texts) - 60  # hosts do move (the /32 and chance fixed points aside)
    assert [o for t, o in zip(texts, out) if _longest(t) is None] == [t for t in texts if _longest(t) is None]
    assert out[texts.index("203.0.113.9")] == "203.0.113.9"  # a /32 has no host bits to hide
    assert len(set(out)) == len(set(texts))  # no two hosts merge, internal or external


def test_nested_networks_are_each_a_permutation_of_themselves() -> None:
    nets = ["172.16.0.0/20", "172.16.5.0/24", "172.16.5.128/28"]
    p = Pseudonymiser(KEY, nets)
    clear = [str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("172.16.0.0")) + i)) for i in range(1 << 12)]
    out = wire.ips_to_strings(p.apply(wire.ips_from_strings(clear)))
    assert set(out) == set(clear)  # a bijection of the /20 onto itself
    for net in nets[1:]:  # and of each nested network onto itself (the longest match keeps its prefix)
        inner = ipaddress.ip_network(net)
        assert {o for c, o in zip(clear, out) if ipaddress.ip_address(c) in inner} == \
            {c for c in clear if ipaddress.ip_address(c) in inner}
    assert sum(c != o for c, o in zip(clear, out)) > 4000
    assert wire.ips_to_strings(p.invert(wire.ips_from_strings(out))) == clear


@settings(max_examples=150, deadline=None)
@given(st.integers(0, (1 << 24) - 1), st.integers(0, (1 << 24) - 1))
def test_host_subnets_inside_a_network_keep_their_prefix_length(a: int, b: int) -> None:
    p = _NESTED_P
    ips = wire.ips_from_strings([_v4(a), _v4(b)])
    out = p.apply(ips)
    assert _common_prefix_bits(out[0, 12:].tobytes(), out[1, 12:].tobytes()) == \
        _common_prefix_bits(ips[0, 12:].tobytes(), ips[1, 12:].tobytes())
    assert out[0, 12] == out[1, 12] == 10 and (p.invert(out) == ips).all()


def test_ipv6_never_maps_into_the_ipv4_mapped_space() -> None:
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, size=(300, 16), dtype=np.uint8)
    raw[:100, :12] = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)  # IPv4-mapped rows
    out = EVERYTHING.apply(raw)
    mapped = (out[:, :12] == raw[0, :12]).all(axis=1)
    assert mapped[:100].all() and not mapped[100:].any()
    assert (EVERYTHING.invert(out) == raw).all()


@pytest.mark.parametrize("networks", [NESTED, ["0.0.0.0/0"], ["::/0"], ["::ffff:0:0/96"], ["::ffff:10.0.0.0/104", "fd00::/8"],
                                      ["10.0.0.0/8", "10.1.2.3/32"]])
def test_the_ipv4_word_path_gives_the_per_row_pseudonyms(networks) -> None:
    """apply() maps IPv4 rows as uint32 words with a sorted cache; each pseudonym equals the per-row
    Crypto-PAn (_map_rows) of that address, batch after batch, warm cache or cold."""
    texts = _sample(3) + [f"10.{i % 3}.{i % 250}.{i % 17}" for i in range(600)] + ["10.1.2.3", "", "::ffff:10.9.9.9"]
    ips = wire.ips_from_strings(texts)
    p = Pseudonymiser(KEY, networks)
    inside = p.inside(ips)
    expected = ips.copy()
    expected[inside] = Pseudonymiser(KEY, networks)._map_rows(ips[inside])
    for part in (ips[:100], ips[50:], ips[::-1]):  # the second and third partly from the cache
        p.apply(part)
    assert (p.apply(ips) == expected).all() and (Pseudonymiser(KEY, networks).apply(ips) == expected).all()
    assert (p.invert(p.apply(ips)) == ips).all()


def test_the_ipv4_cache_starts_afresh_at_its_limit() -> None:
    from finsa.collectors.agent.ipv4_words import WordCache

    cache, calls = WordCache(limit=4), []
    twice = lambda new: (calls.append(new.tolist()), new * 2)[1]  # noqa: E731 - a one-line compute that records its calls
    assert cache.get(np.array([1, 2, 3], dtype=np.uint32), twice).tolist() == [2, 4, 6]
    assert cache.get(np.array([3, 4, 5], dtype=np.uint32), twice).tolist() == [6, 8, 10]
    assert calls == [[1, 2, 3], [4, 5]] and cache.keys.tolist() == [4, 5]  # 5 entries > 4: only the new kept


def test_two_threads_applying_at_once_get_the_pseudonyms_one_thread_gets() -> None:
    """The agent's batches and its local endpoint's requests share one pseudonymiser: its cache
    grows under both (each call brings addresses never seen), and no lookup may mix versions."""
    import sys
    import threading

    rng = np.random.default_rng(5)
    bigs = [wire.ips_from_strings([_v4(int(n)) for n in rng.integers(0, 1 << 23, 20_000)]) for _ in range(6)]
    smalls = [wire.ips_from_strings([_v4(int(n)) for n in rng.integers(0, 1 << 23, 50)]) for _ in range(600)]
    expected = Pseudonymiser(KEY, ["10.0.0.0/8"])
    want = {id(c): expected.apply(c) for c in bigs + smalls}
    shared, wrong = Pseudonymiser(KEY, ["10.0.0.0/8"]), []

    def apply_each(columns) -> None:
        for c in columns:
            wrong.append(int((shared.apply(c) != want[id(c)]).any(axis=1).sum()))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often
    try:
        threads = [threading.Thread(target=apply_each, args=(bigs,)), threading.Thread(target=apply_each, args=(smalls,))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(wrong) == 606 and sum(wrong) == 0
