"""nova 2013.1's os-services (administrators): the compute hosts as nova listed its
services, and taking one out of scheduling.

* ``GET /os-services`` (``?host=``, ``?binary=``): one ``nova-compute`` per compute host
  (``compute_hosts``): zone ``nova`` (Stratus has no availability zones), ``status``
  enabled/disabled (may the scheduler place servers there), ``state`` up/down (the
  scheduler's own test: up, and a heartbeat within ``STRATUS_HOST_DOWN_AFTER_S``),
  ``updated_at`` its last heartbeat. nova also listed its scheduler, conductor and other
  services; Stratus' conductors register nowhere, so only compute hosts are listed
  (docs/compatibility.md). The members are nova 2013.1's (no ``id``, no
  ``disabled_reason``: both came later).
* ``PUT /os-services/enable`` and ``/disable`` ``{"host": h, "binary": "nova-compute"}``:
  as ``stratus host enable/disable`` (and os-hosts' update) do; 404 for a host or binary
  there is no such service of.
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
from api_gateway.schemas.services import ServiceUpdate
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
        "binary": BINARY,
        "host": row.name,
        "zone": ZONE,
        "status": "enabled" if row.enabled else "disabled",
        "state": "up" if row.alive else "down",
        "updated_at": _updated_at(row.last_heartbeat),
    }


def _element(value: dict[str, Any]) -> str:
    """nova's XML: one ``<service>`` whose members are attributes, in no namespace."""
    attributes = "".join(f" {key}={quoteattr(str(v))}" for key, v in value.items())
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


async def _update(request: web.Request, enable: bool) -> web.Response:
    authorize(request, "os-services")
    data = await read_body(request)
    if body_format(request.content_type) is Format.XML and isinstance(data, dict):
        data = data.get("service", data)  # <service host=... binary=.../>: its attributes
    body = validate(ServiceUpdate, data)
    if body.binary != BINARY or not await hosts.set_enabled(
        request.app[keys.POOL], body.host, enable
    ):
        raise ItemNotFound("service not found")
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
