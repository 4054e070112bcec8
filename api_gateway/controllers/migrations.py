"""``GET /os-migrations`` (administrators): the cloud's resizes, cold migrations and live
migrations, newest first, in nova's shape (integer ids, ``*_compute``/``*_node`` = the hosts).

Filters: ``host`` (source or destination), ``status``, ``instance_uuid``, ``migration_type``
(``resize``, ``migration``, ``live-migration``) and ``limit``; other parameters are ignored.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize
from api_gateway.http.faults import BadRequest
from api_gateway.http.responses import render
from api_gateway.http.routing import collection
from api_gateway.schemas.filters import integer, text
from api_gateway.views.links import isotime
from shared.db import migration_history as history
from shared.db.records import MigrationEntry

routes = web.RouteTableDef()

_TYPES = frozenset({"resize", "migration", "live-migration"})


@routes.get(collection("/os-migrations"))
async def index(request: web.Request) -> web.Response:
    authorize(request, "os-migrations")
    most = request.app[keys.SETTINGS].max_page_size
    limit = integer(request.query, "limit")
    rows = await history.list_recent(
        request.app[keys.POOL],
        _filters(request.query),
        limit=most if limit is None or not 0 < limit < most else limit,
    )
    return render(request, {"migrations": [_view(row) for row in rows]})


def _filters(query: Mapping[str, str]) -> history.MigrationFilters:
    server_id = None
    if (instance := text(query, "instance_uuid")) is not None:
        try:
            server_id = uuid.UUID(instance)
        except ValueError:
            raise BadRequest(f"Invalid instance_uuid filter [{instance}]") from None
    kind = text(query, "migration_type")
    if kind is not None and kind not in _TYPES:
        raise BadRequest(f"Invalid migration_type filter [{kind}]")
    return history.MigrationFilters(
        host=text(query, "host"),
        status=text(query, "status"),
        server_id=server_id,
        migration_type=kind,
    )


def _view(row: MigrationEntry) -> dict[str, Any]:
    """One migration as nova 2013.1's os-migrations showed it (``dest_host`` was the
    destination's IP address, which Stratus does not know: null)."""
    return {
        "id": row.number,
        "status": row.status,
        "instance_uuid": str(row.server_id),
        "source_compute": row.source_host,
        "source_node": row.source_host,
        "dest_compute": row.dest_host,
        "dest_node": row.dest_host,
        "dest_host": None,
        "old_instance_type_id": _flavor_number(row.old_flavor_id),
        "new_instance_type_id": _flavor_number(row.new_flavor_id),
        "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at),
    }


def _flavor_number(flavor_id: str) -> int | None:
    """nova's flavors had integer ids here; a flavor id that is not a number shows as null."""
    return int(flavor_id) if flavor_id.isdigit() else None
