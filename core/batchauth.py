"""Signed records: a worker accepts a batch only from the institution it claims to be.

Kafka does not tell a consumer who produced a message, so each institution's agents sign every
message with that institution's key (HMAC-SHA256 over the payload), in two headers:
``finsa-institution`` and ``finsa-signature``. The sector centre holds one key per institution;
a worker verifies the signature with the key of the institution named in the header, and checks
that every row of the batch carries that institution id. A batch failing either check goes to the
dead-letter topic with the reason (``unsigned``, ``unknown_institution``, ``bad_signature``,
``institution_mismatch``). Flow batches, ARP bindings, heartbeats and alerts are all signed
this way (:func:`check_batch`), and a batch seen before is refused as a ``replay``
(:class:`ReplayGuard`). The workers sign the alerts they publish themselves with the sector's
own key, :data:`SERVICE_SIGNER` (``_sector.key`` in the key folder): a name no institution id can
take, whose batches may carry any institution's rows.

>>> key = bytes(32)
>>> headers = sign_headers(b"payload", "bank-a", key)
>>> verifier = BatchVerifier({"bank-a": key})
>>> verifier.check(b"payload", headers)
'bank-a'
>>> try:
...     verifier.check(b"tampered", headers)
... except BatchAuthError as err:
...     print(err.reason)
bad_signature
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from finsa.errors import FinsaError

INSTITUTION_HEADER = "finsa-institution"
#: The signer name of the sector centre's workers (institution ids start with a letter or digit).
SERVICE_SIGNER = "_sector"
SIGNATURE_HEADER = "finsa-signature"


class BatchAuthError(FinsaError):
    """A batch failed authentication; ``reason`` names why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def signature(payload: bytes, key: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def sign_headers(payload: bytes, institution_id: str, key: bytes) -> list[tuple[str, bytes]]:
    """Kafka headers that authenticate ``payload`` as sent by ``institution_id``."""
    return [(INSTITUTION_HEADER, institution_id.encode()), (SIGNATURE_HEADER, signature(payload, key).hex().encode())]


def load_keys(directory: str | Path) -> dict[str, bytes]:
    """One key per institution from ``DIR/<institution>.key`` files (64 hex characters)."""
    keys = {}
    for path in sorted(Path(directory).glob("*.key")):
        keys[path.stem] = bytes.fromhex(path.read_text().strip())
    return keys


class BatchVerifier:
    """Checks signatures with the institutions' keys.

    With ``key_dir``, a batch from an institution without a key makes the verifier read that folder
    again: onboarding an institution is dropping its key file there, no restart. It reads it at
    once when a file was added since its last read (the folder's mtime moved: one ``stat`` per
    unknown batch), otherwise at most every ``reload_interval_s`` (a key rewritten in place), so
    a flood of batches from unknown institutions costs no reads.
    """

    def __init__(self, keys: Mapping[str, bytes], key_dir: str | Path | None = None,
                 reload_interval_s: float = 2.0) -> None:
        self.keys = dict(keys)
        self.key_dir, self.reload_interval_s = key_dir, reload_interval_s
        self._last_reload = time.monotonic()
        self._dir_mtime_ns = self._mtime_ns()

    def _mtime_ns(self) -> int | None:
        try:
            return Path(self.key_dir).stat().st_mtime_ns if self.key_dir is not None else None
        except OSError:
            return None

    def _key_of(self, institution: str) -> bytes | None:
        key = self.keys.get(institution)
        if key is None and self.key_dir is not None:
            mtime_ns = self._mtime_ns()
            if mtime_ns != self._dir_mtime_ns or time.monotonic() - self._last_reload >= self.reload_interval_s:
                self._last_reload, self._dir_mtime_ns = time.monotonic(), mtime_ns
                self.keys.update(load_keys(self.key_dir))
                key = self.keys.get(institution)
        return key

    def check(self, payload: bytes | bytearray, headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> str:
        """The authenticated institution id, or BatchAuthError."""
        found = dict(headers.items() if isinstance(headers, Mapping) else (headers or []))
        institution = found.get(INSTITUTION_HEADER)
        sig = found.get(SIGNATURE_HEADER)
        if not institution or not sig:
            raise BatchAuthError("unsigned")
        inst = bytes(institution).decode("utf-8", "replace")
        key = self._key_of(inst)
        if key is None:
            raise BatchAuthError("unknown_institution")
        try:
            given = bytes.fromhex(bytes(sig).decode("ascii", "replace"))
        except ValueError:
            raise BatchAuthError("bad_signature") from None
        if not hmac.compare_digest(given, signature(bytes(payload), key)):
            raise BatchAuthError("bad_signature")
        return inst

    @property
    def service_key(self) -> bytes | None:
        """The key this worker signs its own alert batches with (``_sector.key``), if it has one."""
        return self.keys.get(SERVICE_SIGNER)

    def check_batch(self, payload: bytes, headers, institution_column: np.ndarray) -> str:
        """:meth:`check`, then every row bound to the signer (not for the sector's own signer)."""
        signer = self.check(payload, headers)
        if signer != SERVICE_SIGNER:
            self.check_rows(institution_column, signer)
        return signer

    @staticmethod
    def check_rows(institution_column: np.ndarray, institution_id: str) -> None:
        """Every row must carry the authenticated institution id."""
        if len(institution_column) and not bool(np.all(institution_column == institution_id)):
            raise BatchAuthError("institution_mismatch")


class ReplayGuard:
    """Refuses a batch id seen among the last ``max_ids`` (``replay``): a signed batch sent again
    (by anyone able to produce) changes nothing.

    >>> guard = ReplayGuard(max_ids=2)
    >>> guard.check(b"1"); guard.check(b"2")
    >>> try:
    ...     guard.check(b"1")
    ... except BatchAuthError as err:
    ...     print(err.reason)
    replay
    """

    def __init__(self, max_ids: int = 100_000) -> None:
        self.max_ids = max_ids
        self._seen: dict[bytes, None] = {}

    def check(self, batch_id: bytes) -> None:
        if batch_id in self._seen:
            raise BatchAuthError("replay")
        self._seen[batch_id] = None
        if len(self._seen) > self.max_ids:
            del self._seen[next(iter(self._seen))]
