"""Another gateway on a running system's database and bus, with settings of its own: how tests
try a policy, a quota or a limit without restarting the shared system."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from api_gateway.app import create_app
from stratus.system import System
from tests.conftest import test_settings


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` listening on an ephemeral loopback port; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def gateway_of_its_own(system: System, tmp: Path, **overrides: object) -> AsyncIterator[str]:
    """A gateway with these settings on ``system``'s database and bus; its base URL."""
    assert system.pool is not None and system.bus is not None
    app = create_app(test_settings(tmp, **overrides), pool=system.pool, bus=system.bus)
    async with serving(app) as url:
        yield url
