"""Which institution's agent an analyst's page may call (the page's CSP then allows that origin:
:func:`finsa.dashboards.page.content_security_policy`).

The centre stores an institution's internal addresses as pseudonyms and never has the key. The
institution's agent translates (:mod:`finsa.collectors.agent.endpoint`), and the analyst's
browser calls it directly: the web view only tells the page where its agent is. An
institution's analyst gets exactly that institution's agent origin (``agent_url`` in the
institutions registry, or the web view's ``agent_origins`` option), in the page's config and in
its ``connect-src``; the regulator, operators and other institutions get neither, so their pages
show pseudonyms and cannot reach any agent.

>>> from finsa.dashboards.users import User
>>> origins = AgentOrigins({"pay-d": "http://127.0.0.1:9465/"})
>>> analyst = User.model_construct(username="ana", role="institution", institution="pay-d")
>>> origins.for_user(analyst), origins.for_user(User.model_construct(username="rita", role="regulator"))
('http://127.0.0.1:9465', None)
"""

from __future__ import annotations

from typing import Mapping

from finsa.dashboards.users import User
from finsa.institutions import check_agent_origins

__all__ = ["AgentOrigins"]


class AgentOrigins:
    """Institution id -> its agent's origin, validated (ConfigError listing every problem)."""

    def __init__(self, origins: Mapping[str, str] | None = None) -> None:
        self._origins = check_agent_origins(origins or {})

    def __bool__(self) -> bool:
        return bool(self._origins)

    def for_user(self, user: User) -> str | None:
        """The origin ``user``'s pages may call: its own institution's agent, for its analysts only."""
        if user.role != "institution" or not user.institution:
            return None
        return self._origins.get(user.institution)
