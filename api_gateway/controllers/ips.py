"""A server's addresses: all of them, or one network's (guide 2.2.1–2.2.2).

One network's addresses are ``{"<network>": [...]}`` in JSON, the reference implementation's
form that today's clients and tempest read, rather than the guide's
``{"network": {"id", "ip"}}`` (Ex 2.24, which is not even valid JSON); in XML both agree on
``<network id="..."><ip/></network>`` (Ex 2.23). The addresses are read-only: any other
method gets 405 badMethod, the guide's fault for a method a resource does not have.
"""

from __future__ import annotations

from aiohttp import web

from api_gateway import keys
from api_gateway.http.faults import ItemNotFound
from api_gateway.http.responses import render
from api_gateway.http.routing import collection, member
from api_gateway.views import servers as view

routes = web.RouteTableDef()


async def _networks(request: web.Request) -> dict[str, list[dict[str, object]]]:
    ctx = keys.context(request)
    row = await keys.compute(request).get_server(ctx, request.match_info["server_id"])
    return view.addresses(row.addresses)


@routes.get(collection("/servers/{server_id}/ips"))
async def index(request: web.Request) -> web.Response:
    return render(request, {"addresses": await _networks(request)})


@routes.get(member("/servers/{server_id}/ips/{network}"))
async def show(request: web.Request) -> web.Response:
    network = request.match_info["network"]
    ips = (await _networks(request)).get(network)
    if ips is None:
        raise ItemNotFound("Instance is not a member of specified network")
    return render(request, {network: ips}, xml_body={"network": {"id": network, "ip": ips}})
