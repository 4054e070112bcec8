"""Readiness: can this process do its work now? (``/readyz``, shared/ops_http.py).

A process is ready when every dependency it has answers: the database (``SELECT 1`` within a
short timeout) where it has a pool, the broker connection where it has a bus. Each check is
a named coroutine that raises when its dependency does not answer; the checks run at once,
so a probe takes at most one timeout however many there are. Liveness needs no check: a
process whose event loop answers ``/healthz`` at all is alive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg

from shared.bus import Bus

#: How long a dependency may take to answer a readiness probe before it counts as down:
#: shorter than the usual probe timeouts (Kubernetes: 1 s by default, Prometheus: 10 s).
CHECK_TIMEOUT_S = 0.8

Check = Callable[[], Awaitable[None]]
Checks = dict[str, Check]


class NotReady(Exception):
    """A dependency is there but cannot serve (the broker connection is closed)."""


def database(pool: asyncpg.Pool) -> Check:
    """The database answers ``SELECT 1`` on a pooled connection."""

    async def check() -> None:
        await pool.fetchval("SELECT 1")

    return check


def broker(bus: Bus) -> Check:
    """The bus's connection to the broker is open (always, for the in-process bus)."""

    async def check() -> None:
        if not bus.is_connected:
            raise NotReady("not connected to the broker")

    return check


class Readiness:
    """The named checks of one process; the gateway adds its own once its pool and bus are
    open, so an instance is made empty and filled later."""

    def __init__(self, checks: Checks | None = None) -> None:
        self.checks: Checks = dict(checks or {})

    def add(self, checks: Checks) -> None:
        self.checks.update(checks)

    async def failures(self, timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, str]:
        """The checks that failed, each with why (empty: ready)."""
        names = list(self.checks)
        outcomes = await asyncio.gather(*(_run(self.checks[n], timeout_s) for n in names))
        return {name: why for name, why in zip(names, outcomes, strict=True) if why is not None}


def checks_for(*, pool: asyncpg.Pool | None = None, bus: Bus | None = None) -> Checks:
    """The checks of a process that has ``pool`` and ``bus`` (either may be absent)."""
    checks: Checks = {}
    if pool is not None:
        checks["database"] = database(pool)
    if bus is not None:
        checks["broker"] = broker(bus)
    return checks


async def _run(check: Check, timeout_s: float) -> str | None:
    try:
        await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s} s"
    except Exception as exc:  # any failure of a dependency means "not ready", with its reason
        return f"{type(exc).__name__}: {exc}"
    return None
