"""The conversation templates of the scenario: TLS, HTTP, request/response, SMTP, SSH, DNS.

Each template is a fixed packet sequence (see :mod:`finsa.scenario.sessions`);
variants differ in how many data segments they carry. TCP templates open with a full
three-way handshake (SYN and SYN-ACK with an MSS option) and close with FIN, FIN, ACK.

>>> [len(https(k).steps) for k in (1, 3)]
[15, 18]
>>> dns().proto, ssh_bruteforce(3).slots[:3]
(17, ('auth', 'cbanner', 'cdh'))
"""

from __future__ import annotations

from functools import lru_cache

from finsa.scenario.packets import ACK, FIN, PSH, RST, SYN
from finsa.scenario.sessions import CLIENT as C
from finsa.scenario.sessions import SERVER as S
from finsa.scenario.sessions import Step, Template

__all__ = ["https", "http", "request_response", "smtp", "ssh_interactive", "ssh_bruteforce",
           "upload", "bulk", "dns", "scan_closed", "scan_open", "scan_filtered", "syn_only", "syn_synack"]

DATA = PSH | ACK
HALF = 0.5  # one way = half a round trip


def _open() -> tuple[Step, ...]:
    return (Step(C, SYN, mss=True), Step(S, SYN | ACK, gap_rtt=HALF, mss=True), Step(C, ACK, gap_rtt=HALF))


def _close(first: int = C) -> tuple[Step, ...]:
    second = S if first == C else C
    return (Step(first, FIN | ACK, gap_ms=2), Step(second, FIN | ACK, gap_rtt=HALF, gap_ms=0.1),
            Step(first, ACK, gap_rtt=HALF))


def _stream(sender: int, segments: int, slot_last: str, first_gap_ms: float) -> tuple[Step, ...]:
    """``segments`` data segments (full ones, then ``slot_last``), the receiver ACKing every other."""
    receiver = S if sender == C else C
    out: list[Step] = []
    for k in range(segments):
        slot = slot_last if k == segments - 1 else "full"
        out.append(Step(sender, DATA, slot, gap_ms=first_gap_ms if k == 0 else 0.08))
        if k % 2 == 1 or k == segments - 1:
            out.append(Step(receiver, ACK, gap_rtt=HALF))
    return tuple(out)


@lru_cache(maxsize=None)
def https(segments: int) -> Template:
    """TLS 1.3 session: ClientHello with SNI, server flight, request, ``segments`` response segments."""
    hello = (Step(C, DATA, "hello", gap_ms=0.1), Step(S, ACK, gap_rtt=HALF),
             Step(S, DATA, "sflight", gap_ms=1.5), Step(S, DATA, "cert", gap_ms=0.05),
             Step(C, ACK, gap_rtt=HALF), Step(C, DATA, "req", gap_ms=0.3))
    body = _stream(S, segments, "last", first_gap_ms=25)  # the server thinks, then answers
    steps = _open() + hello + (Step(S, ACK, gap_rtt=HALF),) + body + _close(C)
    return Template(f"https{segments}", 6, steps)


@lru_cache(maxsize=None)
def upload(segments: int) -> Template:
    """TLS upload: handshake, the client sends ``segments`` data segments, a short server answer."""
    hello = (Step(C, DATA, "hello", gap_ms=0.1), Step(S, ACK, gap_rtt=HALF),
             Step(S, DATA, "sflight", gap_ms=1.5), Step(S, DATA, "cert", gap_ms=0.05),
             Step(C, ACK, gap_rtt=HALF))
    body = _stream(C, segments, "last", first_gap_ms=0.3)
    answer = (Step(S, DATA, "resp", gap_ms=20), Step(C, ACK, gap_rtt=HALF))
    return Template(f"upload{segments}", 6, _open() + hello + body + answer + _close(C))


@lru_cache(maxsize=None)
def bulk(segments: int) -> Template:
    """A plain bulk transfer (backup, file copy): a request, ``segments`` client segments, a short reply."""
    body = (Step(C, DATA, "req", gap_ms=0.5), Step(S, DATA, "resp", gap_rtt=HALF, gap_ms=1))
    stream = _stream(C, segments, "last", first_gap_ms=0.3)
    return Template(f"bulk{segments}", 6, _open() + body + stream + (Step(S, DATA, "resp", gap_ms=2),)
                    + _close(C))


@lru_cache(maxsize=None)
def http(segments: int = 1) -> Template:
    """Plain HTTP: one request, a response of ``segments`` segments, client closes."""
    steps = _open() + (Step(C, DATA, "req", gap_ms=0.1),) + _stream(S, segments, "resp", first_gap_ms=8)
    return Template(f"http{segments}", 6, steps + _close(C))


@lru_cache(maxsize=None)
def request_response(rounds: int) -> Template:
    """A client/server protocol (database, directory, file share): ``rounds`` exchanges."""
    exchange = (Step(C, DATA, "req", gap_ms=3), Step(S, DATA, "resp", gap_rtt=HALF, gap_ms=1.5),
                Step(C, ACK, gap_rtt=HALF))
    return Template(f"rr{rounds}", 6, _open() + exchange * rounds + _close(C))


@lru_cache(maxsize=None)
def smtp() -> Template:
    dialogue = [(S, "banner"), (C, "ehlo"), (S, "ehlo_ok"), (C, "from"), (S, "ok"), (C, "rcpt"),
                (S, "ok"), (C, "data"), (S, "go"), (C, "body"), (S, "queued"), (C, "quit"), (S, "bye")]
    steps = tuple(Step(who, DATA, slot, gap_rtt=HALF, gap_ms=0.5) for who, slot in dialogue)
    return Template("smtp", 6, _open() + steps + (Step(C, ACK, gap_rtt=HALF),) + _close(S))


def _ssh_kex() -> tuple[Step, ...]:
    return (Step(S, DATA, "sbanner", gap_ms=1), Step(C, DATA, "cbanner", gap_rtt=HALF, gap_ms=0.5),
            Step(C, DATA, "ckex", gap_ms=0.2), Step(S, DATA, "skex", gap_rtt=HALF, gap_ms=0.3),
            Step(C, DATA, "cdh", gap_rtt=HALF, gap_ms=0.3), Step(S, DATA, "sdh", gap_rtt=HALF, gap_ms=4),
            Step(C, DATA, "cnew", gap_rtt=HALF, gap_ms=0.5), Step(S, DATA, "snew", gap_rtt=HALF, gap_ms=0.3))


@lru_cache(maxsize=None)
def ssh_interactive(keystrokes: int) -> Template:
    """An administrator's SSH session: key exchange, login, ``keystrokes`` echoed keys."""
    login = (Step(C, DATA, "auth", gap_ms=800), Step(S, DATA, "authok", gap_rtt=HALF, gap_ms=40))
    typing = (Step(C, DATA, "key", gap_ms=180), Step(S, DATA, "echo", gap_rtt=HALF, gap_ms=0.2),
              Step(C, ACK, gap_rtt=HALF))
    return Template(f"ssh{keystrokes}", 6, _open() + _ssh_kex() + login + typing * keystrokes + _close(C))


@lru_cache(maxsize=None)
def ssh_bruteforce(attempts: int) -> Template:
    """A password-guessing SSH session: key exchange, ``attempts`` failed logins, client closes."""
    guess = (Step(C, DATA, "auth", gap_ms=15), Step(S, DATA, "fail", gap_rtt=HALF, gap_ms=300))
    return Template(f"sshbf{attempts}", 6, _open() + _ssh_kex() + guess * attempts + _close(C))


@lru_cache(maxsize=None)
def dns() -> Template:
    return Template("dns", 17, (Step(C, 0, "q"), Step(S, 0, "a", gap_rtt=1.0, gap_ms=0.3)))


@lru_cache(maxsize=None)
def scan_closed() -> Template:
    return Template("scan_closed", 6, (Step(C, SYN, mss=True), Step(S, RST | ACK, gap_rtt=1.0)))


@lru_cache(maxsize=None)
def scan_open() -> Template:
    return Template("scan_open", 6, (Step(C, SYN, mss=True), Step(S, SYN | ACK, gap_rtt=1.0, mss=True),
                                     Step(C, RST, gap_ms=0.05)))


@lru_cache(maxsize=None)
def scan_filtered() -> Template:
    return Template("scan_filtered", 6, (Step(C, SYN, mss=True),))


@lru_cache(maxsize=None)
def syn_only() -> Template:
    return Template("syn", 6, (Step(C, SYN),))


@lru_cache(maxsize=None)
def syn_synack() -> Template:
    """A flood SYN the server still answers (its backlog not yet full); nobody completes it."""
    return Template("syn_synack", 6, (Step(C, SYN), Step(S, SYN | ACK, gap_rtt=1.0, mss=True)))
