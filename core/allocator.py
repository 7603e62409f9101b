"""glibc's allocator, told to hand freed memory back to the system.

A stream worker decodes, detects and stores flow batches of up to hundreds of thousands of rows in
executor threads. glibc gives each such thread its own arena and, once a large block was freed,
serves blocks up to 32 MiB from the arenas instead of fresh mappings; memory freed inside an
arena stays resident (RSS creeps up while the Python heap is flat). :func:`limit_arenas` caps the
arenas new threads get (``mallopt(M_ARENA_MAX)``), :func:`trim` returns free pages of every arena
(``malloc_trim(0)``). Both do nothing where glibc is absent.

>>> isinstance(trim(), bool) and isinstance(limit_arenas(2), bool)
True
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

__all__ = ["limit_arenas", "trim"]

_M_ARENA_MAX = -8  # malloc.h


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - both must exist (glibc), else no tuning
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int) -> bool:
    """At most ``arenas`` malloc arenas from now on; False where it cannot be set."""
    libc = _libc()
    return bool(libc is not None and arenas > 0 and libc.mallopt(_M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give the free pages of every arena back to the system; True when some were returned."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
