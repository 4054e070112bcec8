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

    @property
    def server_scope(self) -> str | None:
        """The project whose servers this caller reaches by id: its own, or any (None) for an
        administrator acting as one (nova's rule: an admin may act on any server by id)."""
        return None if self.is_admin else self.project_id
