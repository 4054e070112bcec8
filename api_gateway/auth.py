"""Authentication strategies; ``noauth`` for development and tests (API.md §3).

noauth: the token is ``user:project``. The user ``admin`` is an administrator, everyone else
a member of their project. A token of one project may not use another project's URLs
(except an administrator's). A request without a token that names a user in ``X-Auth-User``
gets the development handshake of the reference implementation: 204 with a token.
"""

from __future__ import annotations

from aiohttp import web

from api_gateway.context import RequestContext
from api_gateway.faults import Forbidden, Unauthorized


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


def noauth_context(request: web.Request, tenant_id: str, request_id: str) -> RequestContext:
    token = request.headers.get("X-Auth-Token", "")
    user, sep, project = token.partition(":")
    if not token or not user:
        raise Unauthorized("This server could not verify that you are authorized.")
    project = project if sep else user
    roles = frozenset({"admin", "member"} if user == "admin" else {"member"})
    if project != tenant_id:
        if "admin" not in roles:
            raise Forbidden(f"Token is not valid for project {tenant_id}.")
        project = tenant_id  # an administrator acting in another project's URL space
    return RequestContext(user_id=user, project_id=project, roles=roles, request_id=request_id)
