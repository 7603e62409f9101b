"""Who may log in to the web view: a strict TOML users file with salted scrypt password hashes.

The file lists one ``[[user]]`` table per person; unknown keys, a missing or malformed field,
an unknown role, a duplicate username or an institution analyst without an institution are all
reported at once (:class:`UsersFileError`)::

    [[user]]
    username = "rita"
    role = "regulator"                 # regulator | institution | operator
    password_hash = "scrypt$16384$8$1$<salt>$<hash>"

    [[user]]
    username = "ana"
    role = "institution"
    institution = "bank-a"             # required for, and only for, institution analysts
    password_hash = "scrypt$16384$8$1$<salt>$<hash>"

Make a hash without any command (the password is read without echo)::

    python -c 'import getpass; from finsa.dashboards.users import hash_password; print(hash_password(getpass.getpass()))'

Roles: the **regulator** sees the whole sector; an **institution** analyst sees its institution's
flows and alerts plus sector-wide aggregates; the **operator** (who runs finsa) sees everything,
like the regulator, and is recorded as the operator in the audit log.

:func:`ensure_users` is what ``finsa run`` calls: with a users file it loads it; without one it
makes a one-time regulator account (random password, in memory only, valid for this run).

>>> encoded = hash_password("correct horse", n=2**10)
>>> verify_password("correct horse", encoded), verify_password("wrong", encoded)
(True, False)
>>> user = User(username="ana", role="institution", institution="bank-a", password_hash=encoded)
>>> user.principal
'bank-a'
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from finsa.errors import FinsaError

__all__ = ["ROLES", "RESERVED_IDS", "check_institutions", "User", "Users", "Credentials", "UsersFileError", "hash_password", "verify_password",
           "load_users", "parse_users", "ensure_users", "one_time_users"]

ROLES = ("regulator", "institution", "operator")
#: Principal names of storage (store-wide reads): never an institution id (issue 15, finding 8).
RESERVED_IDS = frozenset({"regulator", "operator"})
_SCHEME = "scrypt"
_DEFAULT_N, _R, _P, _DKLEN, _SALT_BYTES = 2**14, 8, 1, 32, 16
_N_RANGE = (2**10, 2**20)  # costs accepted from a file (below: too weak; above: a denial of service)


class UsersFileError(FinsaError):
    """The users file is missing, unreadable or invalid (every problem is listed)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = _DEFAULT_N) -> str:
    """``scrypt$n$r$p$salt$hash`` of ``password`` with a fresh 16-byte salt."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=_R, p=_P, dklen=_DKLEN)
    return f"{_SCHEME}${n}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        raise ValueError("password_hash must look like scrypt$n$r$p$salt$hash (see hash_password)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, TypeError) as exc:
        raise ValueError("password_hash is malformed") from exc
    if not (_N_RANGE[0] <= n <= _N_RANGE[1] and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 4):
        raise ValueError(f"scrypt cost out of range (n a power of two in {_N_RANGE}, r <= 32, p <= 4)")
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("password_hash salt or hash too short")
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded`` (constant-time comparison)."""
    n, r, p, salt, digest = _parse_hash(encoded)
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest),
                               maxmem=256 * n * r + 2**20)
    return hmac.compare_digest(candidate, digest)


class User(BaseModel):
    """One web view account (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    username: str = Field(pattern=r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
    role: Literal["regulator", "institution", "operator"]
    institution: str = Field(default="", pattern=r"^(|[a-z0-9][a-z0-9_-]{0,62})$")
    password_hash: str = Field(repr=False)

    @model_validator(mode="after")
    def _consistent(self) -> "User":
        if self.role == "institution" and not self.institution:
            raise ValueError("an institution analyst needs an institution id")
        if self.role != "institution" and self.institution:
            raise ValueError(f"a {self.role} has no institution")
        if self.institution in RESERVED_IDS:
            raise ValueError(f"{self.institution!r} is a reserved id, not an institution id (it names a role)")
        _parse_hash(self.password_hash)
        return self

    @property
    def principal(self) -> str:
        """Whom storage reads for: ``regulator``, ``operator`` or the institution id."""
        return self.institution if self.role == "institution" else self.role


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown usernames against, so they cost as much as known ones."""
    return hash_password(secrets.token_urlsafe(16))


class Users:
    """The accounts, by username. :meth:`authenticate` costs the same for unknown usernames."""

    def __init__(self, users: Iterable[User]) -> None:
        self._by_name: dict[str, User] = {}
        for user in users:
            if user.username in self._by_name:
                raise UsersFileError(f"user {user.username!r} is listed twice")
            self._by_name[user.username] = user

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, username: object) -> bool:
        return username in self._by_name

    def get(self, username: str) -> User | None:
        return self._by_name.get(username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches, else None (a hash is checked either way)."""
        user = self._by_name.get(username)
        ok = verify_password(password, user.password_hash if user else _dummy_hash())
        return user if ok and user is not None else None


def parse_users(data: dict) -> Users:
    """Users from a parsed TOML document; every problem at once in a UsersFileError."""
    extra = sorted(set(data) - {"user"})
    problems = [f"unknown top-level key(s): {', '.join(extra)}"] if extra else []
    entries = data.get("user", [])
    if not isinstance(entries, list) or not entries:
        problems.append("no [[user]] entries")
        entries = []
    users, seen = [], set()
    for k, entry in enumerate(entries):
        try:
            user = User.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(x) for x in err["loc"]) or "entry"
                problems.append(f"user #{k + 1} {where}: {err['msg']}")
            continue
        if user.username in seen:
            problems.append(f"user #{k + 1}: username {user.username!r} is listed twice")
        seen.add(user.username)
        users.append(user)
    if problems:
        raise UsersFileError("invalid users file:\n  " + "\n  ".join(problems))
    return Users(users)


def check_institutions(users: Users, registry_ids: Iterable[str]) -> None:
    """UsersFileError listing every institution user whose institution is not in the registry."""
    known = set(registry_ids)
    missing = sorted({(u.username, u.institution) for u in users._by_name.values()
                      if u.role == "institution" and u.institution not in known})
    if missing:
        raise UsersFileError("users of institutions not in the registry:\n  " +
                             "\n  ".join(f"user {name!r}: institution {inst!r}" for name, inst in missing))


def load_users(path: str | Path) -> Users:
    """Users from a TOML file (see the module docstring)."""
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise UsersFileError(f"cannot read users file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsersFileError(f"users file {path} is not valid TOML: {exc}") from exc
    return parse_users(data)


@dataclass(frozen=True)
class Credentials:
    """A generated one-time account: print it once to the person starting finsa, nowhere else."""

    username: str
    password: str = field(repr=False)


def one_time_users(username: str = "regulator") -> tuple[Users, Credentials]:
    """A single regulator account with a random password, for this process only."""
    password = secrets.token_urlsafe(15)
    user = User(username=username, role="regulator", password_hash=hash_password(password))
    return Users([user]), Credentials(username, password)


def ensure_users(path: str | Path | None) -> tuple[Users, Credentials | None]:
    """The accounts ``finsa run`` serves the web view with.

    ``path`` given: that file (it must exist and be valid: a mistyped path never opens the view
    to anyone); credentials None. ``path`` None: a one-time regulator account, whose
    credentials the caller prints once, beside the URL.
    """
    if path is not None:
        return load_users(path), None
    return one_time_users()
