"""Conversation templates instantiated many times at once.

A :class:`Template` is a fixed sequence of :class:`Step` (who sends, TCP flags, which payload
slot, how long after the previous step). :func:`instantiate` turns a template and N
:class:`Sessions` (endpoints, start times, round-trip times, initial sequence numbers, payload
ids per slot) into N x T packet rows in one go: sequence and acknowledgement numbers follow from
the cumulative bytes each side sent (SYN and FIN count one), timestamps from the cumulative gaps
with a little random jitter. UDP templates ignore flags and sequence numbers.

>>> import numpy as np
>>> from finsa.scenario.packets import SYN, ACK
>>> t = Template("hs", 6, (Step(0, SYN), Step(1, SYN | ACK, gap_rtt=0.5), Step(0, ACK, gap_rtt=0.5)))
>>> s = Sessions.make(t0_ns=[0], client=[1], server=[2], sport=[40000], dport=[22], rtt_ms=[10])
>>> pk = instantiate(t, s, np.random.default_rng(0))
>>> [int(x) for x in pk.ack], [int(x) for x in pk.seq]
([0, 1, 1], [0, 0, 1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike

from finsa.scenario.packets import ACK, FIN, SYN, Packets

__all__ = ["Step", "Template", "Sessions", "instantiate", "CLIENT", "SERVER"]

CLIENT, SERVER = 0, 1


@dataclass(frozen=True)
class Step:
    """One packet of a template: ``sender`` (CLIENT/SERVER), TCP ``flags``, payload ``slot`` name."""

    sender: int
    flags: int = 0
    slot: str = ""
    gap_rtt: float = 0.0
    gap_ms: float = 0.0
    mss: bool = False


@dataclass(frozen=True)
class Template:
    name: str
    proto: int
    steps: tuple[Step, ...]

    @property
    def slots(self) -> tuple[str, ...]:
        return tuple(sorted({s.slot for s in self.steps if s.slot}))


@dataclass
class Sessions:
    """N instances of a template: per-instance endpoints, timing, ISNs, TTLs and payload ids."""

    t0_ns: np.ndarray
    client: np.ndarray
    server: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    rtt_ms: np.ndarray
    isn_c: np.ndarray
    isn_s: np.ndarray
    ttl_c: np.ndarray
    ttl_s: np.ndarray
    payloads: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t0_ns)

    @classmethod
    def make(cls, t0_ns: ArrayLike, client: ArrayLike, server: ArrayLike, sport: ArrayLike,
             dport: ArrayLike, rtt_ms: ArrayLike, isn_c: ArrayLike = 0, isn_s: ArrayLike = 0,
             ttl_c: ArrayLike = 64, ttl_s: ArrayLike = 64,
             payloads: Mapping[str, ArrayLike] | None = None) -> "Sessions":
        """Sessions from columns; scalars are repeated for every session."""
        n = np.shape(t0_ns)[0]

        def col(v: ArrayLike, dtype: type) -> np.ndarray:
            return np.broadcast_to(np.asarray(v, dtype=dtype), (n,)).copy()

        return cls(col(t0_ns, np.int64), col(client, np.uint32), col(server, np.uint32),
                   col(sport, np.uint16), col(dport, np.uint16), col(rtt_ms, np.float64),
                   col(isn_c, np.uint32), col(isn_s, np.uint32), col(ttl_c, np.uint8), col(ttl_s, np.uint8),
                   {k: col(v, np.int32) for k, v in (payloads or {}).items()})


def instantiate(template: Template, s: Sessions, rng: np.random.Generator,
                payload_lengths: np.ndarray | None = None, jitter: float = 0.15) -> Packets:
    """Rows of all N sessions (session-major order, not sorted by time)."""
    n, steps = len(s), template.steps
    t = len(steps)
    if n == 0:
        return Packets.from_columns(ts_ns=[])
    sender = np.array([st.sender for st in steps], dtype=np.int8)
    flags = np.array([st.flags for st in steps], dtype=np.uint8)
    payload = np.zeros((n, t), dtype=np.int32)
    for k, st in enumerate(steps):
        if st.slot:
            payload[:, k] = s.payloads[st.slot]
    lengths = payload_lengths[payload] if payload_lengths is not None else np.zeros((n, t), np.int64)
    consumed = lengths + ((flags & SYN) > 0) + ((flags & FIN) > 0)
    from_client = np.broadcast_to(sender == CLIENT, (n, t))
    sent_c = _exclusive_cumsum(np.where(from_client, consumed, 0))
    sent_s = _exclusive_cumsum(np.where(from_client, 0, consumed))
    isn_c, isn_s = s.isn_c[:, None].astype(np.int64), s.isn_s[:, None].astype(np.int64)
    seq = np.where(from_client, isn_c + sent_c, isn_s + sent_s)
    ack = np.where(from_client, isn_s + sent_s, isn_c + sent_c)
    ack = np.where((flags & ACK) > 0, ack, 0)
    gap_rtt = np.array([st.gap_rtt for st in steps])
    gap_ms = np.array([st.gap_ms for st in steps])
    gaps_ms = (gap_rtt[None, :] * s.rtt_ms[:, None] + gap_ms[None, :])
    gaps_ms = gaps_ms * rng.uniform(1 - jitter, 1 + jitter, size=(n, t))
    ts_us = s.t0_ns[:, None] // 1000 + np.cumsum(np.round(gaps_ms * 1000).astype(np.int64), axis=1)
    src = np.where(from_client, s.client[:, None], s.server[:, None])
    dst = np.where(from_client, s.server[:, None], s.client[:, None])
    return Packets.from_columns(
        ts_ns=(ts_us * 1000).ravel(), src=src.ravel(), dst=dst.ravel(), proto=template.proto,
        sport=np.where(from_client, s.sport[:, None], s.dport[:, None]).ravel(),
        dport=np.where(from_client, s.dport[:, None], s.sport[:, None]).ravel(),
        flags=np.broadcast_to(flags if template.proto == 6 else 0, (n, t)).ravel(),
        seq=(seq & 0xFFFFFFFF).ravel() if template.proto == 6 else 0,
        ack=(ack & 0xFFFFFFFF).ravel() if template.proto == 6 else 0,
        win=np.where(from_client, 64240, 65160).ravel(),
        ttl=np.where(from_client, s.ttl_c[:, None], s.ttl_s[:, None]).ravel(),
        ip_id=rng.integers(0, 1 << 16, size=n * t),
        opt=np.broadcast_to(np.array([st.mss for st in steps], dtype=np.uint8), (n, t)).ravel(),
        payload=payload.ravel())


def _exclusive_cumsum(values: np.ndarray) -> np.ndarray:
    out = np.zeros_like(values, dtype=np.int64)
    np.cumsum(values[:, :-1], axis=1, out=out[:, 1:])
    return out
