"""Compiled kernels: compiled once, loaded from the cache by later processes without numba; a
cache folder that cannot be written only costs a compile per process; arguments are checked."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from finsa.collectors.compiled import carray, kernel

_KERNEL = textwrap.dedent('''
    import sys
    import numpy as np
    from finsa.collectors.compiled import carray, kernel

    @kernel("i64(i64*, i64, i64*)")
    def odd_total(values_p, n, out_p):
        values, out = carray(values_p, n), carray(out_p, 1)
        s = 0
        for i in range(n):
            if values[i] % 2 == 1:
                s += values[i]
        out[0] = s
        return n

    if __name__ == "__main__":
        out = np.zeros(1, dtype=np.int64)
        assert odd_total(np.arange(10), 10, out) == 10 and out[0] == 25
        print("numba" in sys.modules)
''')


def test_a_second_process_loads_the_cached_code_without_numba(tmp_path) -> None:
    """The first process compiles with numba, the second only loads; a damaged cache file (its
    digest no longer matches) is compiled again, not loaded."""
    (tmp_path / "oddsum.py").write_text(_KERNEL)
    env = dict(os.environ, FINSA_KERNEL_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(tmp_path))

    def numba_imported() -> str:
        return subprocess.run([sys.executable, str(tmp_path / "oddsum.py")], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert [numba_imported(), numba_imported()] == ["True", "False"]
    [cached] = (tmp_path / "cache").glob("__main__.odd_total-*.o")
    cached.write_bytes(cached.read_bytes()[:-40])
    assert numba_imported() == "True"


@kernel("i64(u8*, i64)")
def count_ff(buf_p, n):
    buf = carray(buf_p, n)
    c = 0
    for i in range(n):
        c += buf[i] == 255
    return c


@kernel("i64(u8*, i64)")
def first(buf_p, n):
    return carray(buf_p, n)[0]


def test_an_unwritable_cache_still_runs_the_kernel(tmp_path, monkeypatch, caplog) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("FINSA_KERNEL_CACHE", str(blocker / "cache"))
    assert count_ff(np.array([255, 1, 255], dtype=np.uint8), 3) == 2
    assert "not cached" in caplog.text


def test_arguments_are_checked() -> None:
    assert first(np.array([7, 8], dtype=np.uint8), 2) == 7
    with pytest.raises(TypeError, match="u8"):
        first(np.zeros(3, dtype=np.int64), 3)
    with pytest.raises(TypeError, match="C-contiguous"):
        first(np.zeros(6, dtype=np.uint8)[::2], 3)
    with pytest.raises(ValueError, match="unknown type"):
        kernel("i64(f32*)")(lambda p: 0)



def _last(buf_p, n):
    return carray(buf_p, n)[n - 1]


def test_kernels_share_one_engine_and_a_second_kernel_of_one_name_gets_its_own() -> None:
    """Kernels are relocated into the process's one engine; loading the same function again as
    another Kernel (same symbol) must not clash with the first: it is linked in an engine of its own."""
    from finsa.collectors.compiled import Kernel, cache_dir, undefined_symbols

    a, b = Kernel(_last, "i64(u8*, i64)"), Kernel(_last, "i64(u8*, i64)")
    values = np.array([3, 4, 9], dtype=np.uint8)
    assert a(values, 3) == 9 and b(values, 3) == 9
    assert a._keep == [] and len(b._keep) == 2  # the first in the shared engine, the second in its own
    [cached] = [p for p in cache_dir().glob("*._last-*.o")][:1]
    symbol, _, code = cached.read_bytes().split(b"\n", 2)
    assert "numba_gil_ensure" in undefined_symbols(code) and symbol.decode() not in undefined_symbols(code)


def test_a_kernel_calling_a_name_outside_numbas_runtime_that_the_process_lacks_is_refused() -> None:
    """Only numba's runtime entry points (error paths) may be bound to the no-op stub: a kernel
    object that calls any other undefined name (here a made-up libc-like one) is refused, never
    linked to a function that silently does nothing."""
    from finsa.collectors.compiled import missing_names

    have = {"memcpy"}
    address_of = lambda name: 1 if name in have else 0  # noqa: E731 - the process's symbol table
    assert missing_names("k", ["memcpy", "NRT_Free", "numba_do_raise"], address_of) == ["NRT_Free", "numba_do_raise"]
    with pytest.raises(ValueError, match="kernel k calls not_a_function_here"):
        missing_names("k", ["numba_do_raise", "not_a_function_here"], address_of)
