"""Rate limiting per user (guide 1.6.1), after authentication, before the controllers.

A request counts against every configured limit (``STRATUS_RATE_LIMITS``) whose verb is its
method and whose regex is found in its target: the path after ``/v2/{tenant_id}`` (or after
``/{tenant_id}`` for a bookmark URL) followed by ``?`` and the query string, so
``^/servers`` anchors at the resource path and ``.*changes-since.*`` sees the query. It must
fit all of them, else 413 overLimit with ``Retry-After`` (whole seconds, rounded up).

The counters are in PostgreSQL (shared/db/rate_limits.py) so every gateway replica shares them.
A request that matches no limit never touches the database: with the default limits a plain
GET costs two dictionary lookups.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from aiohttp import web
from aiohttp.typedefs import Handler

from api_gateway import keys
from api_gateway.http.faults import OverLimit
from shared.db import rate_limits as counters
from shared.db.pool import Executor
from shared.db.rate_limits import Bucket
from shared.rate_limits import RateLimit, parse_rate_limits

RATE_LIMITED = "This request was rate-limited."


class RateLimiter:
    """The configured limits, indexed by verb so a request finds its candidates at once."""

    def __init__(self, limits: Sequence[RateLimit]) -> None:
        self.limits = tuple(limits)
        self._by_method: dict[str, tuple[RateLimit, ...]] = {}
        for verb in {limit.verb for limit in self.limits}:
            self._by_method[verb] = tuple(
                limit for limit in self.limits if limit.verb in (verb, "ALL")
            )
        self._any = tuple(limit for limit in self.limits if limit.verb == "ALL")

    def candidates(self, method: str) -> tuple[RateLimit, ...]:
        return self._by_method.get(method, self._any)

    def matching(self, method: str, target: str) -> list[RateLimit]:
        return [limit for limit in self.candidates(method) if limit.pattern.search(target)]

    async def take(self, conn: Executor, user_id: str, limits: Sequence[RateLimit]) -> None:
        """Count one request of ``user_id`` against ``limits``; 413 if any is exhausted (the
        request is then counted against none of them)."""
        outcomes = await counters.take(
            conn, user_id, [Bucket(limit.key, limit.cost, limit.capacity) for limit in limits]
        )
        refused = [o for o in outcomes if o.delay > 0]
        if not refused:
            return
        worst = max(refused, key=lambda o: o.delay)
        limit = next(limit for limit in limits if limit.key == worst.key)
        raise OverLimit(
            RATE_LIMITED,
            details=limit.describe(),
            headers={"Retry-After": str(math.ceil(worst.delay))},
        )


@functools.lru_cache(maxsize=8)
def limiter_for(setting: str) -> RateLimiter:
    """The limiter of a ``STRATUS_RATE_LIMITS`` value (parsed once per process)."""
    return RateLimiter(parse_rate_limits(setting))


def target(request: web.Request, tenant_id: str) -> str:
    """What the limits' regexes are searched in: the path below the project, and the query."""
    path = request.path
    for prefix in (f"/v2/{tenant_id}", f"/{tenant_id}"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
            break
    query = request.query_string
    return f"{path}?{query}" if query else path


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a project request that exceeds one of its user's rate limits."""
    ctx = request.get(keys.CONTEXT)
    tenant_id = request.match_info.get("tenant_id")
    if ctx is not None and tenant_id is not None:  # the limits are on a project's URLs
        limiter = limiter_for(request.app[keys.SETTINGS].rate_limits)
        if limiter.candidates(request.method):
            limits = limiter.matching(request.method, target(request, tenant_id))
            if limits:
                await limiter.take(request.app[keys.POOL], ctx.user_id, limits)
    return await handler(request)
