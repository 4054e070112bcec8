"""A small stand-in for Keystone v3's token API, for tests of the gateway's side of the
conversation that need to make Keystone misbehave (go away, revoke, rotate its keys).

It speaks the two calls the gateway makes, with Keystone's status codes: ``POST
/v3/auth/tokens`` (password, scoped to a project: 201 with ``X-Subject-Token``) and ``GET
/v3/auth/tokens`` (``X-Auth-Token`` must be a current service token, else 401;
``X-Subject-Token`` unknown, expired or revoked: 404). The real Keystone is exercised by
tests/clients (tests/support/keystone.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.support.processes import free_port

SERVICE_USER = "stratus"
SERVICE_PASSWORD = "service-secret"
SERVICE_PROJECT = "service"


@dataclass
class FakeKeystone:
    url: str = ""
    #: token -> the ``token`` document Keystone would return for it
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    service_tokens: set[str] = field(default_factory=set)
    #: how long the service tokens it issues live
    service_lifetime: timedelta = timedelta(hours=1)
    #: answer every request with 503, as a Keystone behind a proxy that lost it
    down: bool = False
    validations: int = 0
    issued: int = 0

    def token(
        self,
        project_id: str | None,
        *roles: str,
        user_id: str = "u-1",
        lifetime: timedelta = timedelta(hours=1),
    ) -> str:
        """A new valid token of ``user_id`` scoped to ``project_id`` with ``roles``."""
        token = f"tok-{uuid.uuid4().hex}"
        self.tokens[token] = _document(user_id, project_id, roles, lifetime)
        return token

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def rotate_keys(self) -> None:
        """Every service token stops being accepted (as after a fernet key rotation)."""
        self.service_tokens.clear()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/auth/tokens", self._issue)
        app.router.add_get("/v3/auth/tokens", self._validate)
        return app

    async def _issue(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        body = await request.json()
        user = body["auth"]["identity"]["password"]["user"]
        project = body["auth"]["scope"]["project"]["name"]
        if (user["name"], user["password"], project) != (
            SERVICE_USER,
            SERVICE_PASSWORD,
            SERVICE_PROJECT,
        ):
            return web.json_response({"error": {"code": 401}}, status=401)
        self.issued += 1
        token = f"svc-{uuid.uuid4().hex}"
        self.service_tokens.add(token)
        document = _document("svc", "p-service", ("service",), self.service_lifetime)
        return web.json_response(document, status=201, headers={"X-Subject-Token": token})

    async def _validate(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=503)
        if request.headers.get("X-Auth-Token") not in self.service_tokens:
            return web.json_response({"error": {"code": 401}}, status=401)
        self.validations += 1
        document = self.tokens.get(request.headers.get("X-Subject-Token", ""))
        if document is None or _expired(document):
            return web.json_response({"error": {"code": 404}}, status=404)
        return web.json_response(document)


def _document(
    user_id: str, project_id: str | None, roles: tuple[str, ...], lifetime: timedelta
) -> dict[str, Any]:
    expires = datetime.now(UTC) + lifetime
    token: dict[str, Any] = {
        "user": {"id": user_id, "name": user_id, "domain": {"id": "default"}},
        "roles": [{"id": f"r-{name}", "name": name} for name in roles],
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "methods": ["password"],
    }
    if project_id is not None:
        token["project"] = {"id": project_id, "name": project_id, "domain": {"id": "default"}}
    return {"token": token}


def _expired(document: dict[str, Any]) -> bool:
    expires = datetime.fromisoformat(document["token"]["expires_at"])
    return expires <= datetime.now(UTC)


@asynccontextmanager
async def fake_keystone() -> AsyncIterator[FakeKeystone]:
    keystone = FakeKeystone()
    runner = web.AppRunner(keystone.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    keystone.url = f"http://127.0.0.1:{port}/v3"
    try:
        yield keystone
    finally:
        await runner.cleanup()
