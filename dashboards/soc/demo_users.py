"""Demo logins for ``finsa run``: the regulator, the operator and one analyst per institution.

Random passwords, in memory only, valid for this run; :func:`announce_logins` prints each
with a one-time login link, once, to the person who started finsa (never to a log).

>>> users, logins = demo_users(["bank-a", "_sector"], cost=2**10)
>>> [(c.username, users.get(c.username).role) for c in logins]
[('regulator', 'regulator'), ('operator', 'operator'), ('analyst-bank-a', 'institution')]
>>> users.get("analyst-bank-a").institution
'bank-a'
"""

from __future__ import annotations

import secrets
from typing import Callable, Iterable, Literal

from aiohttp import web

from finsa.dashboards.login import login_link
from finsa.dashboards.users import Credentials, User, Users, hash_password

__all__ = ["demo_users", "announce_logins"]


def demo_users(institutions: Iterable[str], cost: int = 2**14) -> tuple[Users, list[Credentials]]:
    """Accounts for a demo: ``regulator``, ``operator`` and ``analyst-<id>`` for each institution."""
    people: list[tuple[str, Literal["regulator", "institution", "operator"], str]] = [
        ("regulator", "regulator", ""), ("operator", "operator", "")]
    # ids starting with "_" are the sector's own signers (finsa.batchauth), not institutions
    people += [(f"analyst-{inst}", "institution", inst) for inst in dict.fromkeys(institutions)
               if not inst.startswith("_")]
    users, logins = [], []
    for username, role, institution in people:
        password = secrets.token_urlsafe(15)
        users.append(User(username=username, role=role, institution=institution,
                          password_hash=hash_password(password, n=cost)))
        logins.append(Credentials(username, password))
    return Users(users), logins


def announce_logins(app: web.Application, logins: list[Credentials], base_url: str,
                    out: Callable[[str], None] = print) -> None:
    """One line per login: username, password and a one-time login link."""
    for c in logins:
        out(f"finsa: login (this run only): user {c.username}, password {c.password} -- "
            f"or open {base_url}{login_link(app, c.username)} once")
