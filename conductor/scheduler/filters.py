"""Host filters: each one is a SQL predicate on ``compute_hosts``.

Filtering in the database instead of loading every host row keeps a decision cheap however
many hosts there are; each filter names one reason a host cannot take a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.db import hosts
from shared.db.hosts import Ratios, Resources
from shared.db.sql import Params


class HostFilter(Protocol):
    def predicate(self, params: Params) -> str: ...


@dataclass(frozen=True)
class AliveFilter:
    """Only enabled hosts that heartbeated recently."""

    down_after_s: float

    def predicate(self, params: Params) -> str:
        return (
            "enabled AND up AND last_heartbeat >= now() - make_interval(secs => "
            f"{params.add(self.down_after_s)})"
        )


@dataclass(frozen=True)
class CapacityFilter:
    """Only hosts with room for ``need`` under the allocation ratios (CPU, RAM and disk)."""

    need: Resources
    ratios: Ratios

    def predicate(self, params: Params) -> str:
        return hosts.fits(params, self.need, self.ratios)


@dataclass(frozen=True)
class ExcludeHostsFilter:
    """Not these hosts (the one a server is leaving, hosts that already failed it)."""

    hosts: Sequence[str]

    def predicate(self, params: Params) -> str:
        return f"name <> ALL({params.add(list(self.hosts))}::text[])"
