"""The gateway's middlewares, outermost first: request id, faults, authentication."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler

from api_gateway.auth import AUTH, context_for, needs_token
from api_gateway.controllers.versions import multiple_choices
from api_gateway.http import faults
from api_gateway.http.bodies import storable
from api_gateway.http.responses import render
from api_gateway.http.routing import MultipleChoices
from api_gateway.keys import CONTEXT, REQUEST_ID
from shared import errors
from shared.db.pool import UNAVAILABLE as DATABASE_UNAVAILABLE
from shared.logging import request_context

log = logging.getLogger(__name__)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id and log it on every line (``stamp_request_id`` returns it
    to the client)."""
    request_id = f"req-{uuid.uuid4()}"
    request[REQUEST_ID] = request_id
    with request_context(request_id):
        return await handler(request)


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Return the request's id to the client (``on_response_prepare``, so that an answer a
    handler streams, prepared before the middleware sees it, carries it too)."""
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        response.headers["x-openstack-request-id"] = request_id
        response.headers["X-Compute-Request-Id"] = request_id


def fault_response(request: web.Request, fault: faults.Fault) -> web.Response:
    return render(request, fault.body(), status=fault.code, headers=fault.headers)


def _http_fault(request: web.Request, exc: web.HTTPException) -> faults.Fault:
    if exc.status == 404:
        return faults.ItemNotFound("The resource could not be found.")
    if exc.status == 405:
        return faults.BadMethod(f"The method {request.method} is not allowed for this resource.")
    if exc.status == 413:
        return faults.OverLimit("Request is too large.")
    return faults.for_status(exc.status, exc.text or exc.reason)


def _unavailable(request: web.Request, message: str) -> web.Response:
    """503, to be tried again in a few seconds."""
    return fault_response(request, faults.ServiceUnavailable(message, headers={"Retry-After": "5"}))


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes a v2 fault body; an unexpected one is logged with its stack."""
    try:
        return await handler(request)
    except MultipleChoices:
        return multiple_choices(request)
    except faults.Fault as fault:
        return fault_response(request, fault)
    except errors.StratusError as error:
        return fault_response(request, faults.from_domain(error))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return fault_response(request, _http_fault(request, exc))
    except asyncpg.QueryCanceledError:
        log.warning("a statement ran past STRATUS_API_STATEMENT_TIMEOUT_S: %s", request.path)
        return _unavailable(
            request, "The request took too long and was cancelled; try again later."
        )
    except DATABASE_UNAVAILABLE:
        log.exception("database unavailable")
        return _unavailable(request, "The service is temporarily unavailable; try again later.")
    except Exception:
        log.exception("unexpected error")
        return fault_response(
            request,
            faults.ComputeFault(
                "The server has either erred or is incapable of performing the requested operation."
            ),
        )


@web.middleware
async def storable_input_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for a path or query string the database could not store (a NUL, invalid Unicode):
    such a value must never reach a query as, say, a metadata key or a name filter."""
    values = [request.path, *request.query.keys(), *request.query.values()]
    if not all(storable(value) for value in values):
        raise faults.BadRequest("The request contains a NUL character or invalid Unicode.")
    return await handler(request)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate requests to a project's URLs (``/v2/{tenant_id}/...``) and to the routes
    that ask for a token (api_gateway/auth), with the configured strategy."""
    strategy = request.app[AUTH]
    handshake = strategy.handshake(request)
    if handshake is not None:
        return handshake
    if needs_token(request):
        identity = await strategy.identify(request)
        tenant_id = request.match_info.get("tenant_id")
        request[CONTEXT] = context_for(identity, tenant_id, request, request[REQUEST_ID])
    return await handler(request)


#: Errors PostgreSQL raises to break a cycle of waits or a conflict between concurrent
#: transactions: the transaction was rolled back whole, so running it again is safe.
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
RETRIES = 3


@web.middleware
async def retry_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the handler again when its transaction lost a deadlock (as nova's
    ``retry_on_deadlock``): whichever of two requests PostgreSQL picks as the victim must not
    see a 500 for a race it did not cause. Innermost, so authentication and rate limiting
    count the request once; the body is read once and kept by aiohttp."""
    attempt = 1
    while True:
        try:
            return await handler(request)
        except RETRYABLE as exc:
            if attempt == RETRIES:
                raise errors.ServiceUnavailable(
                    "The request kept conflicting with others; try again."
                ) from exc
            log.warning("%s on attempt %d; running the request again", type(exc).__name__, attempt)
            await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
            attempt += 1
