"""``noauth``: the development strategy (guide 1.1, nova's "noauth" mode).

The token is ``user:project`` (just ``user`` means the project of the same name). The user
``admin`` is an administrator, everyone else a member of the token's project. A request
without a token that names a user in ``X-Auth-User`` gets the development handshake of the
reference implementation: 204 with a token and the project's URL.
"""

from __future__ import annotations

from aiohttp import web

from api_gateway.auth import AuthStrategy, Identity
from api_gateway.http.faults import Unauthorized


def noauth_handshake(request: web.Request) -> web.Response | None:
    """The 204 that hands out a noauth token, or None when the request is not asking for one."""
    user = request.headers.get("X-Auth-User")
    if not user or "X-Auth-Token" in request.headers:
        return None
    project = request.headers.get("X-Auth-Project-Id", user)
    base = f"{request.scheme}://{request.host}"
    return web.Response(
        status=204,
        headers={
            "X-Auth-Token": f"{user}:{project}",
            "X-Server-Management-Url": f"{base}/v2/{project}",
        },
    )


def noauth_identity(token: str) -> Identity:
    """Who a noauth token names; 401 for an empty one."""
    user, sep, project = token.partition(":")
    if not token or not user:
        raise Unauthorized("This server could not verify that you are authorized.")
    roles = frozenset({"admin", "member"} if user == "admin" else {"member"})
    return Identity(user_id=user, project_id=(project if sep else user) or None, roles=roles)


class NoAuth(AuthStrategy):
    def handshake(self, request: web.Request) -> web.StreamResponse | None:
        return noauth_handshake(request)

    async def identify(self, request: web.Request) -> Identity:
        return noauth_identity(request.headers.get("X-Auth-Token", ""))
