"""nova's os-hosts extension (administrators): the compute hosts, what each holds, and
whether the scheduler may place servers there.

* ``GET /os-hosts``: every compute host (service ``compute``, zone ``nova``);
* ``GET /os-hosts/{host}``: its resources: ``(total)``, ``(used_now)`` (what its servers
  hold, resizes' second claims included), ``(used_max)`` (what its servers' flavors add up to)
  and one entry per project with servers there;
* ``PUT /os-hosts/{host}`` ``{"status": "enable"|"disable"}``: a disabled host keeps its
  servers but gets no new ones. ``maintenance_mode`` and the host power actions
  (startup, shutdown, reboot) are not something Stratus can do: 501, as nova's libvirt
  driver answered.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize
from api_gateway.http.bodies import read_body
from api_gateway.http.faults import BadRequest, ItemNotFound, NotImplementedFault
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.schemas.common import validate
from api_gateway.schemas.hosts import HostUpdate
from shared.db import hosts
from shared.db.records import Host, ProjectUsage

routes = web.RouteTableDef()

ZONE = "nova"


@routes.get(collection("/os-hosts"))
async def index(request: web.Request) -> web.Response:
    authorize(request, "os-hosts")
    zone = request.query.get("zone")
    rows = [] if zone not in (None, ZONE) else await hosts.list_all(request.app[keys.POOL])
    listed = [{"host_name": r.name, "service": "compute", "zone": ZONE} for r in rows]
    return render(request, {"hosts": listed})


@routes.get(member("/os-hosts/{host}"))
async def show(request: web.Request) -> web.Response:
    authorize(request, "os-hosts")
    pool = request.app[keys.POOL]
    row = await _host(pool, request.match_info["host"])
    projects = await hosts.usage_by_project(pool, row.name)
    return render(request, {"host": _resources(row, projects)})


@routes.put(member("/os-hosts/{host}"))
async def update(request: web.Request) -> web.Response:
    authorize(request, "os-hosts")
    body = validate(HostUpdate, await read_body(request))
    if body.maintenance_mode is not None:
        raise NotImplementedFault("Maintenance mode is not supported by this cloud's hosts.")
    if body.status is None:  # a request that asks for nothing: the client's error, as in nova
        raise BadRequest("'status' or 'maintenance_mode' needed for host update")
    name = request.match_info["host"]
    if not await hosts.set_enabled(request.app[keys.POOL], name, body.status == "enable"):
        raise ItemNotFound(f"Compute host {name} could not be found.")
    return render(request, {"host": name, "status": f"{body.status}d"})


async def _host(pool: asyncpg.Pool, name: str) -> Host:
    row = await hosts.get(pool, name)
    if row is None:
        raise ItemNotFound(f"Compute host {name} could not be found.")
    return row


def _resources(row: Host, projects: list[ProjectUsage]) -> list[dict[str, Any]]:
    def entry(project: str, cpu: int, memory_mb: int, disk_gb: int) -> dict[str, Any]:
        return {
            "resource": {
                "host": row.name,
                "project": project,
                "cpu": cpu,
                "memory_mb": memory_mb,
                "disk_gb": disk_gb,
            }
        }

    used_max = (
        sum(p.vcpus for p in projects),
        sum(p.ram_mb for p in projects),
        sum(p.disk_gb for p in projects),
    )
    return [
        entry("(total)", row.vcpus, row.ram_mb, row.disk_gb),
        entry("(used_now)", row.vcpus_used, row.ram_mb_used, row.disk_gb_used),
        entry("(used_max)", *used_max),
        *(entry(p.tenant_id, p.vcpus, p.ram_mb, p.disk_gb) for p in projects),
    ]
