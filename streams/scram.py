"""SASL/SCRAM (RFC 5802, RFC 7677) for the broker gate: stored credentials and the server side.

The sector centre keeps, per broker user (one or more per institution), only SCRAM verifiers:
salt, iteration count, StoredKey and ServerKey. A password cannot be recovered from them, and a
client proves it knows the password without sending it. :class:`ScramStore` keeps them in a JSON
file written with mode 0600; :class:`ScramServer` runs one exchange.

>>> store = ScramStore()
>>> store.add_user("bank-a-agent", "s3cret", "SCRAM-SHA-256", iterations=4096)
>>> server = ScramServer(store, "SCRAM-SHA-256")
>>> first = server.step(b"n,,n=bank-a-agent,r=abc")
>>> first.startswith(b"r=abc")
True
>>> try:
...     server.step(b"c=biws,r=" + first.split(b",")[0][2:] + b",p=AAAA")
... except ScramError as err:
...     print(err)
authentication failed
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from finsa.errors import FinsaError

__all__ = ["MECHANISMS", "ScramCredential", "ScramError", "ScramServer", "ScramStore", "derive_credential"]

#: SASL mechanism name -> hashlib name.
MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096


class ScramError(FinsaError):
    """A SCRAM exchange failed. The message never says whether the user exists."""


@dataclass(frozen=True)
class ScramCredential:
    """What the server keeps for one user and mechanism (no password)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


def _hmac(hash_name: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hash_name).digest()


def derive_credential(password: str, mechanism: str, salt: bytes | None = None,
                      iterations: int = MIN_ITERATIONS) -> ScramCredential:
    """The verifiers of ``password`` (a fresh random salt unless one is given)."""
    hash_name = MECHANISMS[mechanism]
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"SCRAM needs at least {MIN_ITERATIONS} iterations")
    salt = salt if salt is not None else secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode("utf-8"), salt, iterations)
    client_key = _hmac(hash_name, salted, b"Client Key")
    return ScramCredential(salt, iterations, hashlib.new(hash_name, client_key).digest(),
                           _hmac(hash_name, salted, b"Server Key"))


class ScramStore:
    """Users' SCRAM verifiers, optionally backed by a JSON file; each user may have a role."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._creds: dict[tuple[str, str], ScramCredential] = {}
        self.roles: dict[str, str] = {}
        if self.path is not None and self.path.exists():
            self._load(self.path)
        # A per-store secret, so a made-up salt for an unknown user is stable but unguessable.
        self._decoy_key = secrets.token_bytes(32)

    def add_user(self, user: str, password: str, mechanism: str = "SCRAM-SHA-512",
                 iterations: int = MIN_ITERATIONS, role: str = "service") -> None:
        """Add or replace a user's credential (and save, when file-backed)."""
        self.set_credential(user, mechanism, derive_credential(password, mechanism, iterations=iterations), role)

    def set_credential(self, user: str, mechanism: str, credential: ScramCredential, role: str = "service") -> None:
        """Store verifiers made elsewhere (e.g. by the institution, so the centre never sees the password)."""
        if mechanism not in MECHANISMS:
            raise ScramError(f"unknown mechanism {mechanism!r}")
        self._creds[(user, mechanism)] = credential
        self.roles[user] = role
        self._save()

    def remove_user(self, user: str) -> None:
        self._creds = {k: v for k, v in self._creds.items() if k[0] != user}
        self.roles.pop(user, None)
        self._save()

    def users(self) -> list[str]:
        return sorted({user for user, _ in self._creds})

    def lookup(self, user: str, mechanism: str) -> ScramCredential | None:
        return self._creds.get((user, mechanism))

    def decoy_salt(self, user: str) -> bytes:
        """A salt for a user that does not exist: the same on every try, like a real one."""
        return _hmac("sha256", self._decoy_key, user.encode("utf-8"))

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8"))
        for user, entry in data.get("users", {}).items():
            self.roles[user] = entry.get("role", "service")
            for mechanism, c in entry.get("scram", {}).items():
                if mechanism not in MECHANISMS:
                    raise ScramError(f"{path}: unknown mechanism {mechanism!r} for {user!r}")
                self._creds[(user, mechanism)] = ScramCredential(
                    base64.b64decode(c["salt"]), int(c["iterations"]),
                    base64.b64decode(c["stored_key"]), base64.b64decode(c["server_key"]))

    def _save(self) -> None:
        if self.path is None:
            return
        users: dict[str, dict] = {}
        for (user, mechanism), c in sorted(self._creds.items()):
            entry = users.setdefault(user, {"role": self.roles.get(user, "service"), "scram": {}})
            entry["scram"][mechanism] = {
                "salt": base64.b64encode(c.salt).decode(), "iterations": c.iterations,
                "stored_key": base64.b64encode(c.stored_key).decode(),
                "server_key": base64.b64encode(c.server_key).decode()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"users": users}, out, indent=1)
        os.replace(tmp, self.path)


def _attributes(message: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.decode("utf-8").split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ScramError("malformed SCRAM message")
        out.setdefault(key, value)
    return out


def _unescape(name: str) -> str:
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise ScramError("malformed SCRAM user name")
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    """The server side of one SCRAM exchange: ``step(client_first)``, then ``step(client_final)``.

    After the second step succeeds, ``user`` is the authenticated user and the returned bytes are
    the server-final message. Any failure raises :class:`ScramError` with the same text whether
    the user is unknown or the password wrong.
    """

    def __init__(self, store: ScramStore, mechanism: str) -> None:
        if mechanism not in MECHANISMS:
            raise ScramError(f"unsupported mechanism {mechanism}")
        self.store, self.mechanism, self.hash_name = store, mechanism, MECHANISMS[mechanism]
        self.user: str | None = None
        self._state: tuple | None = None

    @staticmethod
    def server_nonce() -> str:
        """The server's part of the nonce (random; replaceable in tests of known vectors)."""
        return base64.b64encode(secrets.token_bytes(18)).decode()

    def step(self, message: bytes) -> bytes:
        try:
            return self._first(message) if self._state is None else self._final(message)
        except (UnicodeDecodeError, ValueError, KeyError):
            raise ScramError("malformed SCRAM message") from None

    def _first(self, message: bytes) -> bytes:
        gs2_flag, authzid, bare = message.split(b",", 2)
        if gs2_flag not in (b"n", b"y"):
            raise ScramError("channel binding is not supported")
        attrs = _attributes(bare)
        user = _unescape(attrs["n"])
        if authzid and _unescape(authzid.decode()[2:]) != user:
            raise ScramError("authentication failed")
        if attrs.get("m") or not attrs.get("r") or "tokenauth" in bare.decode():
            raise ScramError("authentication failed")
        cred = self.store.lookup(user, self.mechanism)
        salt = cred.salt if cred else self.store.decoy_salt(user)
        iterations = cred.iterations if cred else MIN_ITERATIONS
        nonce = attrs["r"] + self.server_nonce()
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}".encode()
        self._state = (user, cred, nonce, bare, server_first, message[: len(gs2_flag) + len(authzid) + 2])
        return server_first

    def _final(self, message: bytes) -> bytes:
        user, cred, nonce, client_first_bare, server_first, gs2_header = self._state  # type: ignore[misc]  # set by _first: step() calls _final only then
        without_proof, _, proof_part = message.rpartition(b",p=")
        attrs = _attributes(without_proof)
        if attrs.get("r") != nonce or base64.b64decode(attrs.get("c", "")) != gs2_header:
            raise ScramError("authentication failed")
        auth_message = client_first_bare + b"," + server_first + b"," + without_proof
        if cred is None:
            raise ScramError("authentication failed")
        signature = _hmac(self.hash_name, cred.stored_key, auth_message)
        proof = base64.b64decode(proof_part, validate=True)
        if len(proof) != len(signature):
            raise ScramError("authentication failed")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(self.hash_name, client_key).digest(), cred.stored_key):
            raise ScramError("authentication failed")
        self.user = user
        return b"v=" + base64.b64encode(_hmac(self.hash_name, cred.server_key, auth_message))
