"""Compiled loops for the collectors' hot paths, cached as machine code and loaded without numba.

A loop over packets or capture records that numpy would run as dozens of passes over the same
bytes is written once in plain Python over raw pointers (``carray(pointer, length)``) and marked
``@kernel(signature)``. Its first call anywhere compiles it with numba (LLVM, no C compiler) to a
C-callable function and stores the object code in a cache folder; every later call, in this
process or another, loads that object code with llvmlite alone (~40 ms for the first kernel of a
process) and calls it through ctypes. Importing numba and building its typing context costs
about 0.6 CPU s per process, more than a capture's whole decoding, so numba is imported only to
compile.

Signatures are ``"result(arg, ...)"`` with ``i64`` (an int) and pointers ``u8*``, ``u16*``,
``i8*``, ``i64*``, ``u64*`` (a C-contiguous numpy array of that type is passed, checked at each call).
Helpers a kernel calls are marked ``@helper``; they are compiled into each kernel that uses them.
The cache key is the source of the kernel's module and of this one, llvmlite's version and the
host CPU; the folder is ``$FINSA_KERNEL_CACHE`` or ``$XDG_CACHE_HOME/finsa/kernels`` (default
``~/.cache/finsa/kernels``), so a read-only package folder is fine. Kernels must not raise (no
division by a variable, no allocation): they run without numba's runtime.

>>> import numpy as np
>>> @helper
... def twice(x):
...     return 2 * x
>>> @kernel("i64(i64*, i64)")
... def total(values_p, n):
...     values = carray(values_p, n)
...     s = 0
...     for i in range(n):
...         s += twice(values[i])
...     return s
>>> total(np.arange(5), 5)
20
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import struct
import sys
import tempfile
import threading
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["kernel", "helper", "carray", "prefetch", "cache_dir", "readonly_bytes", "Kernel", "missing_names"]

_POINTERS = {"u8*": np.uint8, "u16*": np.uint16, "i8*": np.int8, "i64*": np.int64, "u64*": np.uint64}
_STUBS = """
define void @numba_gil_ensure(i8* %s) { ret void }
define void @numba_gil_release(i8* %s) { ret void }
define void @NRT_MemInfo_call_dtor(i8* %s) { ret void }
"""  # only reached on error paths that kernels do not have (they raise nothing, allocate nothing)
_STUB_NAMES = frozenset({"numba_gil_ensure", "numba_gil_release", "NRT_MemInfo_call_dtor"})
#: Prefixes of the only names a kernel's object may use undefined (numba's runtime and its raising
#: machinery, reached only on error paths that kernels do not have, such as ``numba_do_raise``):
#: bound to a stub that does nothing. Any other name the process lacks refuses the kernel.
_ERROR_PATH_PREFIXES = ("NRT_", "numba_")
_LOCK = threading.Lock()
_LOG = logging.getLogger(__name__)


def carray(pointer: Any, length: int) -> np.ndarray:
    """Inside a kernel: the array of ``length`` items at ``pointer`` (numba's ``carray``)."""
    raise RuntimeError("carray is only meaningful inside a compiled kernel")


def prefetch(array: np.ndarray, index: int) -> None:
    """Inside a kernel: ask the CPU to start loading ``array[index]`` into its caches (no effect on
    results; a packet header needed a few iterations later then arrives while others are decoded)."""


def helper(fn: Callable) -> Callable:
    """Mark ``fn`` as a function kernels may call (compiled into each kernel that calls it)."""
    fn._finsa_helper = True  # type: ignore[attr-defined]  # a marker read by the compiler below
    return fn


def cache_dir() -> Path:
    """Where compiled kernels are cached."""
    if os.environ.get("FINSA_KERNEL_CACHE"):
        return Path(os.environ["FINSA_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "finsa" / "kernels"


def readonly_bytes(data) -> np.ndarray:
    """A uint8 view of a bytes-like buffer (at least one byte: empty gives one zero).

    >>> readonly_bytes(b"ab").tolist(), readonly_bytes(b"").tolist()
    ([97, 98], [0])
    """
    return np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(1, dtype=np.uint8)


def _parse(signature: str) -> tuple[str, list[str]]:
    result, _, rest = signature.partition("(")
    args = [a.strip() for a in rest.rstrip(")").split(",") if a.strip()]
    for a in [result, *args]:
        if a != "i64" and a not in _POINTERS and not (a == "void" and a is result):
            raise ValueError(f"kernel signature {signature!r}: unknown type {a!r}")
    return result.strip(), args


class Kernel:
    """A compiled loop: call it like the function, with numpy arrays for the pointer arguments."""

    def __init__(self, fn: Callable, signature: str) -> None:
        self.fn, self.signature = fn, signature
        self.result, self.args = _parse(signature)
        self._call: Callable | None = None
        self._keep: list = []  # an engine of its own and its target machine, when it needs one

    def __call__(self, *values: Any) -> int:
        call = self._call or self._load()
        raw = []
        for kind, value in zip(self.args, values, strict=True):
            if kind == "i64":
                raw.append(int(value))
                continue
            if value.dtype != _POINTERS[kind] or not value.flags.c_contiguous:
                raise TypeError(f"{self.fn.__name__}: expected a C-contiguous {kind[:-1]} array, got {value.dtype}")
            raw.append(value.ctypes.data)
        return call(*raw)

    def _key(self) -> str:
        import llvmlite
        import llvmlite.binding as llvm

        _init_llvm()
        sources = [Path(sys.modules[m].__file__ or "").read_bytes() for m in sorted(_modules(self.fn, set()))]
        parts = [*sources, _own_source(), self.fn.__qualname__.encode(), self.signature.encode(),
                 llvmlite.__version__.encode(), *_host_cpu(llvm)]
        return hashlib.sha256(b"\0".join(parts)).hexdigest()[:24]

    def _load(self) -> Callable:
        with _LOCK:
            if self._call is None:
                try:
                    path = cache_dir() / f"{self.fn.__module__}.{self.fn.__qualname__}-{self._key()}.o"
                    cached = _read_cached(path)
                    symbol, code = cached if cached else _compile(self.fn, self.result, self.args, path)
                except ImportError as exc:
                    raise ImportError(f"{exc}: metering needs numba (pip install 'finsa[collector]')") from exc
                self._call = self._link(symbol.decode(), code)
        return self._call

    def _link(self, symbol: str, code: bytes) -> Callable:
        address = _ENGINE.load(symbol, code, self)
        ctype = lambda kind: ctypes.c_int64 if kind == "i64" else ctypes.c_void_p  # noqa: E731 - two-way map
        result = None if self.result == "void" else ctype(self.result)
        return ctypes.CFUNCTYPE(result, *map(ctype, self.args))(address)


def undefined_symbols(code: bytes) -> list[str]:
    """Names an ELF64 little-endian object file uses without defining them (its symbol table's
    undefined entries); [] for anything else.

    >>> undefined_symbols(b"not an object")
    []
    """
    if len(code) < 64 or code[:6] != b"\x7fELF\x02\x01":
        return []
    shoff, = struct.unpack_from("<Q", code, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", code, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", code, shoff + i * shentsize) for i in range(shnum)]
    out = []
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 2 or not entsize:  # SHT_SYMTAB
            continue
        names_at = sections[link][4]
        for at in range(offset + entsize, offset + size, entsize):  # entry 0 is the null symbol
            name, _, _, shndx = struct.unpack_from("<IBBH", code, at)
            if shndx == 0 and name:
                out.append(code[names_at + name:code.index(b"\0", names_at + name)].decode())
    return out


class _Engine:
    """One LLVM engine for every kernel of the process: the stubs are compiled once (about 5 ms)
    and each kernel's object code is only relocated into it (about 0.3 ms instead of 5).

    Names an object uses that neither the process nor the stubs define are bound to a stub that
    does nothing when they are numba runtime entry points (:data:`_ERROR_PATH_PREFIXES`, reached
    only on error paths that kernels do not have); any other such name is refused
    (:func:`missing_names`).
    A kernel whose symbol is loaded already (two kernels of one name) gets an engine of its own.
    """

    def __init__(self) -> None:
        self._parts: list = []  # the target machine and engine that own the loaded code
        self._loaded: set[str] = set()

    def _shared(self):
        import llvmlite.binding as llvm

        if not self._parts:
            machine = llvm.Target.from_default_triple().create_target_machine()
            engine = llvm.create_mcjit_compiler(llvm.parse_assembly(_STUBS), machine)
            engine.finalize_object()
            self._parts = [machine, engine, engine.get_function_address("numba_gil_ensure")]
        return self._parts

    def load(self, symbol: str, code: bytes, owner: Kernel) -> int:
        """Address of ``symbol`` once ``code`` is loaded (the caller holds _LOCK)."""
        import llvmlite.binding as llvm

        _, engine, noop = self._shared()
        for name in missing_names(symbol, undefined_symbols(code), llvm.address_of_symbol):
            llvm.add_symbol(name, noop)  # process-wide: both paths below resolve through it
        if symbol in self._loaded:
            machine = llvm.Target.from_default_triple().create_target_machine()
            engine = llvm.create_mcjit_compiler(llvm.parse_assembly(_STUBS), machine)
            engine.add_object_file(llvm.ObjectFileRef.from_data(code))
            engine.finalize_object()
            owner._keep = [machine, engine]
            return engine.get_function_address(symbol)
        engine.add_object_file(llvm.ObjectFileRef.from_data(code))
        engine.finalize_object()
        self._loaded.add(symbol)
        return engine.get_function_address(symbol)


_ENGINE = _Engine()


def missing_names(symbol: str, undefined: list[str], address_of: Callable[[str], int]) -> list[str]:
    """The names of ``undefined`` that the process (``address_of``) and the stubs lack, all numba
    runtime entry points (bound to the no-op stub); a ValueError naming any other.

    >>> missing_names("k", ["numba_do_raise", "memcpy"], lambda name: 0 if name == "numba_do_raise" else 1)
    ['numba_do_raise']
    >>> missing_names("k", ["system"], lambda name: 0)
    Traceback (most recent call last):
    ValueError: kernel k calls system, which this process does not define: refused
    """
    missing = [name for name in undefined if name not in _STUB_NAMES and not address_of(name)]
    unknown = [name for name in missing if not name.startswith(_ERROR_PATH_PREFIXES)]
    if unknown:
        raise ValueError(f"kernel {symbol} calls {', '.join(unknown)}, which this process does not define: refused")
    return missing


def kernel(signature: str) -> Callable[[Callable], Kernel]:
    """Compile the decorated function on its first call (see the module docstring)."""
    return lambda fn: Kernel(fn, signature)


_llvm_ready = False


def _modules(fn: Callable, seen: set) -> set[str]:
    """Modules whose source a kernel's code comes from: its own and its helpers' (the cache key)."""
    seen.add(fn)
    for name in fn.__code__.co_names:
        value: Any = fn.__globals__.get(name)
        if getattr(value, "_finsa_helper", False) and value not in seen:
            _modules(value, seen)
    return {f.__module__ for f in seen}


@functools.lru_cache(maxsize=1)
def _own_source() -> bytes:
    return Path(__file__).read_bytes()


_HOST_CPU: list[bytes] = []


def _host_cpu(llvm: Any) -> list[bytes]:
    """The host CPU's name and features (asked once per process)."""
    if not _HOST_CPU:
        _HOST_CPU.extend([llvm.get_host_cpu_name().encode(), llvm.get_host_cpu_features().flatten().encode()])
    return _HOST_CPU


def _init_llvm() -> None:
    global _llvm_ready
    if not _llvm_ready:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _llvm_ready = True


def _numba_version(fn: Callable, numba: Any, done: dict) -> Callable:
    """``fn`` with its helpers (and ``carray``) swapped for their compiled versions."""
    if fn in done:
        return done[fn]
    names = dict(fn.__globals__)
    for name in fn.__code__.co_names:
        value: Any = names.get(name)
        if value is carray:
            names[name] = numba.carray
        elif value is prefetch:
            names[name] = _prefetch_intrinsic()
        elif getattr(value, "_finsa_helper", False):
            names[name] = numba.njit(_numba_version(value, numba, done))
    done[fn] = types.FunctionType(fn.__code__, names, fn.__name__, fn.__defaults__, fn.__closure__)
    return done[fn]


def _prefetch_intrinsic() -> Callable:
    """numba intrinsic for :func:`prefetch`: LLVM's ``llvm.prefetch`` (read, high locality)."""
    from llvmlite import ir
    from numba.core import cgutils, types as nt
    from numba.core.extending import intrinsic

    @intrinsic
    def _prefetch(typingctx, array, index):
        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            at = builder.bitcast(builder.gep(data, [args[1]]), ir.IntType(8).as_pointer())
            fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()] + [ir.IntType(32)] * 3)
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            i32 = ir.IntType(32)
            builder.call(fn, [at, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()
        return nt.void(array, index), codegen

    return _prefetch


def _read_cached(path: Path) -> tuple[bytes, bytes] | None:
    """(symbol, object code) from a cache file whose digest matches its code, else None (compile)."""
    try:
        symbol, digest, code = path.read_bytes().split(b"\n", 2)
    except (OSError, ValueError):
        return None
    return (symbol, code) if hashlib.sha256(code).hexdigest().encode() == digest else None


#: packages numba's typing context imports when it is first built, to type calls kernels never
#: make: cffi (a cffi whose compiled backend is another version raises a plain Exception there,
#: seen with a system interpreter over a venv's packages) and scipy (BLAS for np.dot, 0.2 s)
_UNUSED_BY_KERNELS = ("cffi", "scipy.linalg.cython_blas", "scipy.linalg.cython_lapack")


@contextlib.contextmanager
def _without_modules(names: tuple[str, ...]) -> Iterator[None]:
    """Make ``names`` unimportable (ImportError, which numba handles) unless already imported."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # None in sys.modules: the import raises ImportError
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _compile(fn: Callable, result: str, args: list[str], path: Path) -> tuple[bytes, bytes]:
    """Compile ``fn`` with numba to object code and cache it: (symbol, object code)."""
    import numba
    from numba import types as nt

    kinds = {"i64": nt.int64, "void": nt.void, "u8*": nt.CPointer(nt.uint8), "u16*": nt.CPointer(nt.uint16),
             "i8*": nt.CPointer(nt.int8), "i64*": nt.CPointer(nt.int64), "u64*": nt.CPointer(nt.uint64)}
    with _without_modules(_UNUSED_BY_KERNELS):
        compiled: Any = numba.cfunc(kinds[result](*(kinds[a] for a in args)), nogil=True)(
            _numba_version(fn, numba, {}))
    # numba's own cache stores this same object code (CodeLibrary.serialize_using_object_code)
    symbol, code = compiled.native_name.encode(), compiled._library._get_compiled_object()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
            tmp.write(b"\n".join([symbol, hashlib.sha256(code).hexdigest().encode(), code]))
        os.replace(tmp.name, path)  # atomic: a concurrent process reads the old file or the new one
    except OSError as exc:  # no writable cache: this process still runs the code, the next compiles again
        _LOG.warning("compiled kernel not cached in %s: %s", path.parent, exc)
    return symbol, code
