"""The exception hierarchy of finsa: every error finsa raises on purpose is a FinsaError.

>>> issubclass(ConfigError, FinsaError)
True
"""

from __future__ import annotations


class FinsaError(Exception):
    """Base of every error finsa raises on purpose."""


class ConfigError(FinsaError):
    """A configuration was refused; ``problems`` lists each as 'field.path: reason'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, list(problems)
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{source}: {count}\n" + "\n".join(f"  {p}" for p in problems))


class CaptureError(FinsaError):
    """A capture file could not be read at all (not a pcap/pcapng, unreadable)."""


class StorageError(FinsaError):
    """The store refused or failed an operation."""


class BrokerError(FinsaError):
    """The Kafka broker could not be reached or refused an operation."""
