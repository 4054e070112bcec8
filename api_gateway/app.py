"""The gateway's application factory."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from api_gateway import keys
from api_gateway.auth import AUTH, policy
from api_gateway.auth.factory import create_strategy
from api_gateway.compute.api import ComputeAPI
from api_gateway.consoles import pages as console_pages
from api_gateway.consoles import proxy as console_proxy
from api_gateway.controllers import (
    extensions,
    flavor_extra_specs,
    flavors,
    host_data,
    hosts,
    image_data,
    image_service,
    images,
    instance_actions,
    ips,
    keypairs,
    limits,
    metadata,
    migrations,
    quota_sets,
    server_actions,
    servers,
    services,
    versions,
)
from api_gateway.http.collector import freeze_startup_objects, unfreeze
from api_gateway.http.metrics import http_metrics_middleware
from api_gateway.http.middlewares import (
    auth_middleware,
    fault_middleware,
    request_id_middleware,
    retry_middleware,
    stamp_request_id,
    storable_input_middleware,
)
from api_gateway.http.negotiation import requested_version
from api_gateway.http.rate_limits import rate_limit_middleware
from api_gateway.http.routing import MultipleChoices, add_routes
from api_gateway.image_purge import purge_deleted_image_data
from api_gateway.views.cache import RenderCache
from shared import health, ops_http
from shared.bus import Bus
from shared.bus.factory import create_bus
from shared.config import Settings
from shared.db.pool import create_pool
from shared.image_data.configured import open_image_data
from shared.periodic import Periodic
from shared.rpcapi import ConductorClient
from shared.sealing import Keyring

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, pool: asyncpg.Pool | None = None, bus: Bus | None = None
) -> web.Application:
    """The v2 API application.

    ``pool`` and ``bus`` are shared with other components when given (``stratus up``);
    otherwise the application opens its own on startup and closes them on cleanup.
    """
    app = web.Application(
        middlewares=[
            http_metrics_middleware,
            request_id_middleware,
            fault_middleware,
            storable_input_middleware,
            auth_middleware,
            rate_limit_middleware,
            retry_middleware,
        ],
        client_max_size=settings.max_request_body_bytes,
    )
    app[keys.SETTINGS] = settings
    app.on_response_prepare.append(stamp_request_id)
    policy.configured(settings.policy)  # a malformed STRATUS_POLICY stops the gateway here
    app[keys.RENDER_CACHE] = RenderCache(settings.render_cache_entries)
    app[keys.IMAGE_DATA] = open_image_data(settings)
    app[AUTH] = create_strategy(settings)
    readiness = health.Readiness()  # its checks are added once the pool and the bus are open
    ops_http.add_routes(app, readiness)  # first: no project route may shadow them

    async def resources(app: web.Application) -> AsyncIterator[None]:
        own_pool = pool is None
        own_bus = bus is None
        app[keys.POOL] = pool or await open_pool(
            settings, _require(settings.database_url, "STRATUS_DATABASE_URL")
        )
        the_bus = bus or create_bus(settings)
        if own_bus:
            await the_bus.connect()
        app[keys.BUS] = the_bus
        await ConductorClient(the_bus).declare()  # the queue the gateway sends to
        app[keys.COMPUTE] = ComputeAPI(settings, app[keys.POOL], the_bus)
        app[keys.KEYRING] = Keyring.from_setting(settings.message_key)
        swept = await app[keys.IMAGE_DATA].sweep(settings.image_upload_stale_after_s)
        if swept:
            log.warning("removed %d half-written image uploads: %s", len(swept), swept)
        purge = Periodic(
            "remove deleted images' data",
            functools.partial(purge_deleted_image_data, app[keys.POOL], app[keys.IMAGE_DATA]),
            interval_s=settings.image_purge_interval_s,
            tolerated=(OSError, asyncpg.PostgresError, asyncpg.InterfaceError),
            jitter=0.25,
        )
        purge.start()
        readiness.add(health.checks_for(pool=app[keys.POOL], bus=the_bus))
        await app[AUTH].start()
        yield
        await purge.stop()
        await app[keys.IMAGE_DATA].aclose()
        await app[AUTH].close()
        if own_bus:
            await the_bus.close()
        if own_pool:
            await app[keys.POOL].close()

    app.cleanup_ctx.append(resources)
    # after ``resources``: the objects of a started gateway stay out of full collections
    app.on_startup.append(freeze_startup_objects)
    app.on_cleanup.append(unfreeze)
    controllers = (
        versions,
        flavors,
        images,
        servers,
        limits,
        extensions,
        metadata,
        ips,
        instance_actions,
        flavor_extra_specs,
        migrations,
        hosts,
        image_service,
        image_data,
        host_data,
        server_actions,
        keypairs,
        quota_sets,
        services,
        console_proxy,
        console_pages,  # after the proxy: its route would take the proxy's paths too
    )
    add_routes(app, [m.routes for m in controllers])
    app.router.add_route("*", "/{path:.*}", unknown_path)
    return app


async def open_pool(settings: Settings, url: str) -> asyncpg.Pool:
    """The gateway's pool: every statement bounded by ``api_statement_timeout_s``, so no
    request holds a connection for minutes (``stratus up`` opens one beside the conductor's),
    and every wait for PostgreSQL by ``api_db_timeout_s``, so that a request still gets its
    503 when the database cannot be heard at all (a network partition)."""
    return await create_pool(
        url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        statement_timeout_s=settings.api_statement_timeout_s,
        timeout_s=settings.api_db_timeout_s,
    )


async def unknown_path(request: web.Request) -> web.StreamResponse:
    """No route matched. A known path with another method is 405; an unknown version-less
    path gets the choices (300); anything else (the image service's included) is 404."""
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        match, methods = await resource.resolve(request)
        if match is None and methods:
            raise web.HTTPMethodNotAllowed(request.method, sorted(methods))
    versioned = request.path.startswith(("/v2/", "/image/"))
    if not versioned and requested_version(request) is None:
        raise MultipleChoices
    raise web.HTTPNotFound


def _require(value: str | None, name: str) -> str:
    if not value:
        raise RuntimeError(f"{name} must be set for a stand-alone gateway")
    return value
