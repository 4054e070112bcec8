"""A request whose transaction loses a deadlock runs again instead of answering 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from aiohttp import web

from api_gateway.http.middlewares import RETRIES, fault_middleware, retry_middleware


def _app(fail_times: int) -> tuple[web.Application, list[int]]:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(len(await request.read()))  # the body is there on every attempt
        if len(calls) <= fail_times:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return web.json_response({"ok": len(calls)})

    app = web.Application(middlewares=[fault_middleware, retry_middleware])
    app.router.add_post("/x", handler)
    return app, calls


async def test_a_deadlock_victim_runs_again(aiohttp_client: Callable[..., Any]) -> None:
    app, calls = _app(fail_times=RETRIES - 1)
    client = await aiohttp_client(app)
    response = await client.post("/x", data=b"body")
    assert response.status == 200
    assert await response.json() == {"ok": RETRIES}
    assert calls == [4] * RETRIES


async def test_a_request_that_keeps_losing_is_a_503_with_retry_after(
    aiohttp_client: Callable[..., Any],
) -> None:
    app, calls = _app(fail_times=RETRIES)
    client = await aiohttp_client(app)
    response = await client.post("/x", data=b"body", headers={"Accept": "application/json"})
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert (await response.json())["serviceUnavailable"]["code"] == 503
    assert len(calls) == RETRIES
