"""Application hints (placeholder until the parsers land)."""
from __future__ import annotations


def packet_hints(packets, decoded, keep):
    return None
