"""Who is asking (guide 1.1): the authentication strategies and the rules every one of them
shares.

A strategy (``STRATUS_AUTH_STRATEGY``) turns a request's ``X-Auth-Token`` into an
``Identity``: ``noauth`` (api_gateway/auth/noauth.py, development) reads it from the token
itself, ``keystone`` (api_gateway/auth/keystone.py) asks Keystone. What an identity may reach
is decided here, once for all strategies (``context_for``): a project's URLs only with a token
of that project, unless the caller is an administrator; writes only with a role that may write.

Requests are authenticated when their route names a project (``/v2/{tenant_id}/...``) or was
declared ``token_required`` (the image service's API under ``/image``, whose project is the
token's); the version documents and the image service's discovery need no token.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from api_gateway.context import RequestContext
from api_gateway.http.faults import Forbidden

#: Roles that may change things; a token with none of them (Keystone's ``reader`` alone) may
#: only read.
WRITER_ROLES = frozenset({"admin", "member"})

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Identity:
    """The caller, as its token says: a user, the project the token is scoped to (None for a
    token scoped to no project) and its roles (lower-case names)."""

    user_id: str
    project_id: str | None
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class AuthStrategy(abc.ABC):
    """One way of telling who sends a request."""

    async def start(self) -> None:  # noqa: B027 (an optional hook)
        """Open what the strategy needs (connections); called when the gateway starts."""

    async def close(self) -> None:  # noqa: B027 (an optional hook)
        """Release what ``start`` opened."""

    def handshake(self, request: web.Request) -> web.StreamResponse | None:
        """A response that hands out credentials (noauth's development handshake), or None
        when the request is not asking for one."""
        return None

    @abc.abstractmethod
    async def identify(self, request: web.Request) -> Identity:
        """The caller of ``request``; raises ``Unauthorized`` (401) for a missing or invalid
        token, ``ServiceUnavailable`` (503) when it cannot be told now."""


AUTH = web.AppKey("auth", AuthStrategy)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TOKEN_REQUIRED: set[Handler] = set()


def token_required(handler: Handler) -> Handler:
    """Declare that a route outside ``/v2/{tenant_id}`` needs a token all the same: its
    project is the token's own."""
    _TOKEN_REQUIRED.add(handler)
    return handler


def needs_token(request: web.Request) -> bool:
    """Does the route ``request`` matched need the caller's identity?"""
    match = request.match_info
    return "tenant_id" in match or match.handler in _TOKEN_REQUIRED


def context_for(
    identity: Identity, tenant_id: str | None, request: web.Request, request_id: str
) -> RequestContext:
    """The context of a request by ``identity`` to the URLs of ``tenant_id`` (None: no
    project in the URL, the token's own project is meant).

    A token scoped to another project than the URL's is refused (403), unless its holder is
    an administrator, who then acts in the URL's project. A token with only read roles may
    not write (403)."""
    project = identity.project_id
    if tenant_id is not None and project != tenant_id:
        if not identity.is_admin:
            raise Forbidden(f"Token is not valid for project {tenant_id}.")
        project = tenant_id  # an administrator acting in another project's URL space
    if project is None:
        raise Forbidden("The token is not scoped to a project.")
    if request.method not in _READS and not identity.roles & WRITER_ROLES:
        raise Forbidden("The token's roles only allow reading.")
    return RequestContext(
        user_id=identity.user_id, project_id=project, roles=identity.roles, request_id=request_id
    )
