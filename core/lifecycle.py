"""One shutdown path for every long-running finsa process (``run``, ``worker``, ``collect``, web view).

The first SIGTERM or SIGINT asks for a *drain*: the process stops its intake, finishes what it
acknowledged (through detection and storage), checkpoints, closes its store, stops its children
and exits 0. The drain is bounded by ``drain_timeout_s`` (printed at start, set with
``--drain-timeout``); past it the process stops anyway. A second signal stops at once (what was
not drained stays in the broker or the spool and is redelivered at the next start).

:class:`Shutdown` only records what was asked and when; each program asks it in its own loop
(:meth:`Shutdown.drain_over`, :meth:`Shutdown.wait_drained`). It installs its handlers on an
asyncio loop (:meth:`install_on_loop`) or process-wide (:meth:`install`). Faust/mode's worker
would install its own on the loop: :mod:`finsa.streams.service` turns that off.

>>> stop = Shutdown("demo", drain_timeout_s=5, say=lambda line: None)
>>> stop.requested, stop.immediate.is_set()
(False, False)
>>> stop.request("SIGTERM"); stop.requested, stop.immediate.is_set(), 0 < stop.remaining_s <= 5
(True, False, True)
>>> stop.request("SIGTERM"); stop.immediate.is_set(), stop.drain_over()
(True, True)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from typing import Callable

from finsa.metrics import REGISTRY

__all__ = ["Shutdown", "STOP_SIGNALS", "EXIT_ALLOWANCE_S"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Time allowed after the drain to stop the stream worker, close the store and stop children.
#: A service manager's stop timeout must exceed ``drain_timeout_s + EXIT_ALLOWANCE_S``.
EXIT_ALLOWANCE_S = 15.0
SIGNALS = REGISTRY.counter("finsa_stop_signals_total", "Stop signals received, by signal and effect",
                           ["signal", "effect"])


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Shutdown:
    """What stopping was asked for: nothing, a drain (first signal) or now (second signal)."""

    def __init__(self, name: str, drain_timeout_s: float = 20.0, say: Callable[[str], None] = _stderr,
                 watchdog: bool = False, setting: str = "--drain-timeout") -> None:
        if not drain_timeout_s >= 0:
            raise ValueError(f"drain_timeout_s: must be >= 0, got {drain_timeout_s!r}")
        self.name, self.drain_timeout_s, self.say = name, float(drain_timeout_s), say
        self.watchdog, self.setting = watchdog, setting
        self.draining = threading.Event()
        self.immediate = threading.Event()
        self.signal_name = ""
        self._deadline = 0.0

    @property
    def requested(self) -> bool:
        return self.draining.is_set()

    @property
    def exit_bound_s(self) -> float:
        """The process exits within this many seconds of the first signal."""
        return self.drain_timeout_s + EXIT_ALLOWANCE_S

    def announce(self) -> None:
        """Say once, at start, how this process stops."""
        self.say(f"finsa {self.name}: SIGTERM/SIGINT drains for at most {self.drain_timeout_s:g} s "
                 f"({self.setting}) and exits within {self.exit_bound_s:g} s; a second one stops at once")

    def request(self, signal_name: str = "request") -> None:
        """First call: start draining (the deadline starts now); second: stop now."""
        if not self.draining.is_set():
            self.signal_name = signal_name
            self._deadline = time.monotonic() + self.drain_timeout_s
            self.draining.set()
            SIGNALS.inc(signal=signal_name, effect="drain")
            self.say(f"finsa {self.name}: {signal_name}: draining for at most {self.drain_timeout_s:g} s "
                     f"(send it again to stop now)")
            if self.watchdog:
                threading.Thread(target=self._last_resort, daemon=True, name="finsa-exit-watchdog").start()
        elif not self.immediate.is_set():
            self.immediate.set()
            SIGNALS.inc(signal=signal_name, effect="stop_now")
            self.say(f"finsa {self.name}: {signal_name} again: stopping now")

    def _last_resort(self) -> None:
        """With ``watchdog``: a process still here ``exit_bound_s`` after the first signal (a stop
        step that hangs) exits anyway, with status 1, saying so. Never on a clean stop."""
        time.sleep(self.exit_bound_s)
        self.say(f"finsa {self.name}: did not stop within {self.exit_bound_s:g} s of {self.signal_name}; exiting now")
        os._exit(1)

    @property
    def remaining_s(self) -> float:
        """Seconds of drain left (the whole bound before any request, 0 once stopping now)."""
        if self.immediate.is_set():
            return 0.0
        if not self.draining.is_set():
            return self.drain_timeout_s
        return max(self._deadline - time.monotonic(), 0.0)

    def drain_over(self) -> bool:
        """True once the drain must end: stop-now asked, or its deadline passed."""
        return self.immediate.is_set() or (self.draining.is_set() and time.monotonic() >= self._deadline)

    async def wait_drained(self, done: Callable[[], bool], poll_s: float = 0.1) -> bool:
        """Wait (asyncio) until ``done()`` or the drain is over; returns ``done()``."""
        while not done():
            if self.drain_over():
                return done()
            await asyncio.sleep(poll_s)
        return True

    def wait_drained_blocking(self, done: Callable[[], bool], poll_s: float = 0.1) -> bool:
        """:meth:`wait_drained` for a thread."""
        while not done():
            if self.drain_over():
                return done()
            self.immediate.wait(poll_s)
        return True

    def install_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGTERM/SIGINT call :meth:`request` (run on ``loop``)."""
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.request, sig.name)

    def install(self) -> None:
        """SIGTERM/SIGINT call :meth:`request` (process-wide; call from the main thread). Installed
        before ``asyncio.run``, they stay in place when the loop closes, so a signal that arrives
        while the process exits is still a request, never a default kill."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, frame: self.request(signal.Signals(signum).name))
