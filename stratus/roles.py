"""One coroutine per ``stratus`` subcommand."""

from __future__ import annotations

import json
import logging
from typing import Protocol

from aiohttp import web

from api_gateway.app import create_app
from api_gateway.auth.exposure import check_exposure
from compute_agent.simulation import AgentOptions
from compute_agent.virt.factory import create_driver, driver_kind, up_drivers
from conductor.service import ConductorService
from shared import health
from shared.bus.factory import create_bus
from shared.config import Settings
from shared.db import seed
from shared.db.embedded import EmbeddedPostgres
from shared.db.pool import create_pool
from shared.ops_http import ops_listener
from stratus import images
from stratus.runtime import (
    require,
    require_keyring,
    upgrade_database,
    wait_for_shutdown,
    with_local_message_key,
)
from stratus.system import System

log = logging.getLogger(__name__)


def _print_applied(name: str, seconds: float) -> None:
    print(f"applied {name} ({seconds:.2f} s)", flush=True)


async def db_upgrade(settings: Settings) -> None:
    url = require(settings.database_url, "STRATUS_DATABASE_URL")
    applied = await upgrade_database(url, on_applied=_print_applied)
    print(f"database is up to date ({len(applied)} migrations applied)")


async def api(settings: Settings) -> None:
    check_exposure(settings)
    require_keyring(settings)  # a one-line refusal, before the app would raise it
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, settings.api_host, settings.api_port).start()
    log.info("API listening on http://%s:%d", settings.api_host, settings.api_port)
    try:
        await wait_for_shutdown()
    finally:
        await runner.cleanup()


class _Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class _Closing(Protocol):
    async def close(self) -> None: ...


async def _serve(service: _Service, *connections: _Closing) -> None:
    """Run ``service`` until asked to stop; then stop it and close its ``connections``."""
    await service.start()
    try:
        await wait_for_shutdown()
    finally:
        await service.stop()
        for connection in connections:
            await connection.close()


async def conductor(settings: Settings) -> None:
    url = require(settings.database_url, "STRATUS_DATABASE_URL")
    pool = await create_pool(url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    bus = create_bus(settings)
    async with ops_listener(settings, health.Readiness(health.checks_for(pool=pool, bus=bus))):
        await bus.connect()
        await _serve(ConductorService(settings, pool, bus), bus, pool)


async def agent(settings: Settings) -> None:
    keyring = require_keyring(settings)
    bus = create_bus(settings)
    async with ops_listener(settings, health.Readiness(health.checks_for(bus=bus))):
        await bus.connect()
        await _serve(
            AgentOptions.of(settings, keyring).agent(settings.host, bus, create_driver(settings)),
            bus,
        )


async def up(settings: Settings) -> None:
    """The whole system in this process, on embedded defaults unless told otherwise."""
    settings = with_local_message_key(settings)
    embedded = None
    url = settings.database_url
    if not url:
        embedded = EmbeddedPostgres(settings.data_dir / "postgres")
        url = await embedded.start()
    try:
        await upgrade_database(url)
        await images.register_built_guest(url, settings)  # deploy/guest's, when built
        system = System(settings, url, up_drivers(settings))
        await system.start()
        try:
            _print_welcome(settings, system, await system.hypervisors())
            await wait_for_shutdown()
            print("\nstopping…", flush=True)
        finally:
            await system.stop()
    finally:
        if embedded is not None:
            await embedded.close()


def _print_welcome(settings: Settings, system: System, hypervisors: dict[str, str]) -> None:
    driver: str = driver_kind(settings)
    if driver == "fake" and settings.virt_driver == "auto":
        driver = "fake (libvirt binding not installed)"
    image = seed.image_id(seed.DEFAULT_IMAGES[0][0])
    hosts = "\n             ".join(f"{host}  {uri}" for host, uri in hypervisors.items())
    move = _live_migration_example(system.url, list(hypervisors)) if len(hypervisors) > 1 else ""
    database = (
        "STRATUS_DATABASE_URL"
        if settings.database_url
        else f"embedded PostgreSQL in {settings.data_dir}"
    )
    print(
        f"""
Stratus is up: OpenStack Compute API v2 at {system.url}/v2/
  database   {database}
  bus        {"RabbitMQ (STRATUS_AMQP_URL)" if settings.amqp_url else "in-process"}
  hypervisor {driver}
  hosts      {hosts}

Try:
  curl -H 'X-Auth-Token: admin:demo' {system.url}/v2/demo/flavors
  curl -H 'X-Auth-Token: admin:demo' -H 'Content-Type: application/json' \\
       -d '{{"server": {{"name": "web1", "imageRef": "{image}", "flavorRef": "1"}}}}' \\
       {system.url}/v2/demo/servers{move}

Press Ctrl-C to stop.""",
        flush=True,
    )


def _live_migration_example(url: str, hosts: list[str]) -> str:
    """The curl line that moves a running server to another of the hosts."""
    body = json.dumps(
        {"os-migrateLive": {"host": hosts[-1], "block_migration": False, "disk_over_commit": False}}
    )
    return f"""
  # move it, running, to another host ({" or ".join(hosts)}, not its own):
  curl -H 'X-Auth-Token: admin:demo' -H 'Content-Type: application/json' \\
       -d '{body}' \\
       {url}/v2/demo/servers/<server id>/action"""
