"""Run a function inside a named network namespace, leaving the rest of the process where it is.

A sensor may capture on an interface that lives in another network namespace (a container's,
or a test's throw-away one made with ``ip netns add``). :func:`in_netns` runs ``fn`` in a fresh
thread that first joins the namespace with ``setns(2)``: sockets created there stay bound to
that namespace for their whole life, whichever thread uses them afterwards, while the calling
thread never changes namespace. Needs CAP_SYS_ADMIN.

>>> in_netns(None, lambda: 42)
42
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Callable, TypeVar

from finsa.errors import CaptureError

__all__ = ["in_netns", "netns_path"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/run/netns")


def netns_path(name: str) -> Path:
    """The file of a namespace: a path as given, or ``/run/netns/NAME`` for an ``ip netns`` name."""
    return Path(name) if "/" in name else _NETNS_DIR / name


def _setns(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CaptureError(f"network namespace {path}: {exc.strerror or exc}") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise CaptureError(f"cannot enter network namespace {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(name: str | None, fn: Callable[[], T]) -> T:
    """``fn()`` run in network namespace ``name`` (``None``: here, in this thread); its result."""
    if name is None:
        return fn()
    box: dict[str, object] = {}

    def runner() -> None:
        try:
            _setns(netns_path(name))
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            box["error"] = exc

    thread = threading.Thread(target=runner, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]  # runner stored a BaseException there
    return box["result"]  # type: ignore[return-value]  # fn()'s result, of the caller's type
