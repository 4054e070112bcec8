"""Who is asking: the request context every controller receives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    user_id: str
    project_id: str
    roles: frozenset[str]
    request_id: str

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles
