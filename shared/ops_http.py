"""The operations endpoints every process serves: ``/metrics``, ``/healthz``, ``/readyz``.

The gateway adds them to its API listener (outside ``/v2``, no token); conductors and agents,
which have no HTTP API, serve them on a small listener of their own at ``metrics_host`` and
``metrics_port`` (``ops_listener``). ``stratus up`` serves them once, on the gateway.

* ``/metrics``: Prometheus's text format, from the default registry (shared/metrics.py);
* ``/healthz``: 200 whenever the event loop answers (liveness: restart me if this fails);
* ``/readyz``: 200 when every dependency answers, else 503 with a JSON body naming each one
  that failed and why (readiness: send me no work while this fails; shared/health.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from shared import health
from shared.config import Settings

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"

#: The readiness checks of the application's process (the gateway fills them in on startup).
READINESS = web.AppKey("readiness", health.Readiness)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS]
    failed = await readiness.failures()
    if failed:
        return web.json_response({"status": "unavailable", "failed": failed}, status=503)
    return web.json_response({"status": "ready", "checks": sorted(readiness.checks)})


def add_routes(app: web.Application, readiness: health.Readiness) -> None:
    """Serve the three endpoints on ``app``, with ``readiness``'s checks."""
    app[READINESS] = readiness
    for path, handler in ((METRICS_PATH, metrics), (HEALTHZ_PATH, healthz), (READYZ_PATH, readyz)):
        app.router.add_route("GET", path, handler)  # GET only, like every route of the API


def create_app(readiness: health.Readiness) -> web.Application:
    """The listener of a process without an HTTP API of its own (conductor, agent)."""
    app = web.Application()
    add_routes(app, readiness)
    return app


@contextlib.asynccontextmanager
async def ops_listener(
    settings: Settings, readiness: health.Readiness
) -> AsyncIterator[str | None]:
    """Serve the endpoints at ``metrics_host``:``metrics_port`` while the block runs; yields
    the listener's URL, or None when it is off (port 0) or could not be opened.

    A port already taken (two agents on one machine with the default port) is logged and
    the process runs on without metrics: they help to operate the service, they are not it.
    """
    if settings.metrics_port == 0:
        yield None
        return
    runner = web.AppRunner(create_app(readiness), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
    except OSError as exc:
        log.error(
            "cannot serve /metrics on %s:%d (%s): running without; set STRATUS_METRICS_PORT "
            "to a free port, or 0",
            settings.metrics_host,
            settings.metrics_port,
            exc,
        )
        await runner.cleanup()
        yield None
        return
    url = f"http://{settings.metrics_host}:{settings.metrics_port}"
    log.info("metrics and health checks on %s", url)
    try:
        yield url
    finally:
        await runner.cleanup()
