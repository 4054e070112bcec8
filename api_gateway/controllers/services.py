"""nova's os-services (administrators): the compute hosts as nova listed its services, and
taking one out of scheduling, saying why if the administrator wants to.

* ``GET /os-services`` (``?host=``, ``?binary=``): one ``nova-compute`` per compute host
  (``compute_hosts``): ``id`` (a stable integer, numbered as hosts register), zone ``nova``
  (Stratus has no availability zones), ``status`` enabled/disabled (may the scheduler place
  servers there), ``disabled_reason`` (null unless an administrator gave one: here, or by
  ``stratus host disable --reason``), ``state`` up/down (the scheduler's own test: up, and a
  heartbeat within ``STRATUS_HOST_DOWN_AFTER_S``), ``updated_at`` its last heartbeat. nova
  also listed its scheduler, conductor and other services; Stratus' conductors register
  nowhere, so only compute hosts are listed (docs/compatibility.md). ``id`` and
  ``disabled_reason`` are nova 2013.2's (os-extended-services): tempest's v2.1 schema and
  the openstack CLI want them.
* ``PUT /os-services/enable`` and ``/disable`` ``{"host": h, "binary": "nova-compute"}``:
  as ``stratus host enable/disable`` (and os-hosts' update) do, forgetting any reason; 404
  for a host or binary there is no such service of.
* ``PUT /os-services/disable-log-reason`` with ``"disabled_reason"`` too (nova 2013.2): a
  disable that keeps the reason; the answer names it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize
from api_gateway.http.bodies import read_body
from api_gateway.http.faults import ItemNotFound
from api_gateway.http.negotiation import CONTENT_TYPES, Format, body_format, response_format
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.http.serializers import xml
from api_gateway.schemas.common import validate
from api_gateway.schemas.services import ServiceDisableWithReason, ServiceUpdate
from shared.db import hosts
from shared.db.records import HostService

routes = web.RouteTableDef()

BINARY = "nova-compute"
ZONE = "nova"


def _updated_at(value: datetime) -> str:
    """nova's ``updated_at``: UTC, microseconds, no zone (``2012-10-29T13:42:05.000000``)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _service(row: HostService) -> dict[str, Any]:
    return {
        "id": row.service_id,
        "binary": BINARY,
        "host": row.name,
        "zone": ZONE,
        "status": "enabled" if row.enabled else "disabled",
        "disabled_reason": row.disabled_reason,
        "state": "up" if row.alive else "down",
        "updated_at": _updated_at(row.last_heartbeat),
    }


def _element(value: dict[str, Any]) -> str:
    """nova's XML: one ``<service>`` whose members are attributes, in no namespace; a null
    member (no disabled reason) is no attribute."""
    attributes = "".join(f" {key}={quoteattr(str(v))}" for key, v in value.items() if v is not None)
    return f"<service{attributes}/>"


def _answer(request: web.Request, body: dict[str, Any], xml_body: str) -> web.Response:
    if response_format(request) is Format.XML:
        return web.Response(
            body=xml.flat_document(xml_body), content_type=CONTENT_TYPES[Format.XML]
        )
    return render(request, body)


@routes.get(collection("/os-services"))
async def index(request: web.Request) -> web.Response:
    authorize(request, "os-services")
    settings = request.app[keys.SETTINGS]
    rows = await hosts.services(request.app[keys.POOL], settings.host_down_after_s)
    listed = [_service(row) for row in rows]
    host, binary = request.query.get("host"), request.query.get("binary")
    if host:  # nova: an empty filter is no filter
        listed = [s for s in listed if s["host"] == host]
    if binary:
        listed = [s for s in listed if s["binary"] == binary]
    inner = "".join(_element(s) for s in listed)
    return _answer(request, {"services": listed}, f"<services>{inner}</services>")


async def _body(request: web.Request) -> Any:
    data = await read_body(request)
    if body_format(request.content_type) is Format.XML and isinstance(data, dict):
        data = data.get("service", data)  # <service host=... binary=.../>: its attributes
    return data


async def _set(
    request: web.Request, body: ServiceUpdate, enable: bool, reason: str | None = None
) -> None:
    if body.binary != BINARY or not await hosts.set_enabled(
        request.app[keys.POOL], body.host, enable, reason=reason
    ):
        raise ItemNotFound("service not found")


async def _update(request: web.Request, enable: bool) -> web.Response:
    authorize(request, "os-services")
    body = validate(ServiceUpdate, await _body(request))
    await _set(request, body, enable)
    answer = {
        "host": body.host,
        "binary": body.binary,
        "status": "enabled" if enable else "disabled",
    }
    return _answer(request, {"service": answer}, _element(answer))


@routes.put(member("/os-services/enable"))
async def enable(request: web.Request) -> web.Response:
    return await _update(request, True)


@routes.put(member("/os-services/disable"))
async def disable(request: web.Request) -> web.Response:
    return await _update(request, False)


@routes.put(member("/os-services/disable-log-reason"))
async def disable_log_reason(request: web.Request) -> web.Response:
    authorize(request, "os-services")
    body = validate(ServiceDisableWithReason, await _body(request))
    await _set(request, body, False, body.disabled_reason)
    answer = {
        "host": body.host,
        "binary": body.binary,
        "status": "disabled",
        "disabled_reason": body.disabled_reason,
    }
    return _answer(request, {"service": answer}, _element(answer))
