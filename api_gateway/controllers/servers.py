"""Servers: create (one or several: os-multiple-create), list and detail (with filters), show,
update, delete (guide 2.1.1–2.1.5)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from api_gateway import keys
from api_gateway.auth.policy import authorize, permitted
from api_gateway.context import RequestContext
from api_gateway.http.bodies import read_body
from api_gateway.http.negotiation import Format, response_format
from api_gateway.http.responses import (
    collection_body,
    collection_response,
    render,
    render_item,
)
from api_gateway.http.routing import collection, member
from api_gateway.schemas.common import page_params, validate
from api_gateway.schemas.filters import server_filters
from api_gateway.schemas.servers import CreateServerBody, UpdateServerBody
from api_gateway.views import servers as view
from api_gateway.views.links import Link, base_url, split_page
from shared.db.records import ServerEntry
from shared.db.servers import ServerFilters, packed_versions
from shared.errors import NotFound

routes = web.RouteTableDef()


def extended_view(request: web.Request) -> view.Extended:
    """The extension members the caller may see in a server (api_gateway/auth/policy.py)."""
    return view.Extended(
        status=permitted(request, "OS-EXT-STS"),
        server_attributes=permitted(request, "OS-EXT-SRV-ATTR"),
    )


async def _page(request: web.Request) -> tuple[list[ServerEntry], list[Link]]:
    """One page of the project's servers, filtered by the query, and its ``next`` link if
    more follow (one row more than the page is fetched to know)."""
    query = _list_query(request)
    rows = await keys.compute(request).list_servers(
        keys.context(request),
        limit=query.limit + 1,
        marker=query.marker,
        filters=query.filters,
        all_projects=query.all_projects,
        project=query.project,
    )
    return split_page(request, rows, query.limit)


@dataclass(frozen=True)
class _ListQuery:
    """What the query string asks of a list: page size, marker, filters, projects."""

    limit: int
    marker: str | None
    filters: ServerFilters | None
    all_projects: bool
    project: str | None


#: ``_list_query``'s answers by (query string, page size bound): most lists repeat one of a
#: few query strings (often none), each parsed once (its filters, its marker, its limit).
_LIST_QUERIES: dict[tuple[str, int], _ListQuery] = {}
_LIST_QUERIES_KEPT = 256


def _list_query(request: web.Request) -> _ListQuery:
    """What the query string asks, remembered per query string: it is a function of that
    string alone (a refused one raises every time, and is never kept)."""
    key = (request.query_string, request.app[keys.SETTINGS].max_page_size)
    query = _LIST_QUERIES.get(key)
    if query is None:
        query = _parse_list_query(request, key[1])
        if len(_LIST_QUERIES) >= _LIST_QUERIES_KEPT:
            del _LIST_QUERIES[next(iter(_LIST_QUERIES))]  # the oldest: a bound, not a policy
        _LIST_QUERIES[key] = query
    return query


def _parse_list_query(request: web.Request, max_page_size: int) -> _ListQuery:
    limit, marker = page_params(request, max_page_size)
    return _ListQuery(
        limit=limit,
        marker=marker,
        filters=server_filters(request.query),
        all_projects=_truthy(request.query.get("all_tenants")),
        project=request.query.get("tenant_id", "").strip() or None,
    )


def _truthy(value: str | None) -> bool:
    """``all_tenants`` as nova read it: present and not an explicit no."""
    return value is not None and value.strip().lower() not in ("0", "false", "no", "off")


@routes.get(collection("/servers"))
async def index(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    rows, links = await _page(request)
    base = base_url(request)
    body: dict[str, object] = {"servers": [view.basic(r, base, ctx.project_id) for r in rows]}
    if links:
        body["servers_links"] = links
    return render(request, body)


@routes.get(collection("/servers/detail"))
async def detail(request: web.Request) -> web.Response:
    """The detailed page, whole from the render cache when none of its rows changed.

    A page's bytes are a function of its rows (each row's id and version: the version
    changes with anything a representation shows, the ids make the ``next`` link), of the
    path and query string (filters, limit, marker), of what ``_render_scope`` names (format,
    base URL, project, visible extensions) and of the caller's reach (``server_scope``: which
    fetched rows it may see). With the same of all these, the same bytes: a page of
    unchanged servers then costs one query of two packed strings and one lookup, no
    rendering (``bytes()``: the packed key, also for the empty page ``()`` of no filter).
    Concurrent requests of one caller for one page share that query (``page_checks``: one
    started after each of them arrived, so none misses a write it saw acknowledged)."""
    ctx = keys.context(request)
    fmt = response_format(request)
    pages = request.app[keys.RENDER_CACHE].pages
    scope = (_render_scope(request, ctx), request.path_qs, ctx.server_scope)
    query = _list_query(request)
    compute = keys.compute(request)
    if pages.max_bytes > 0:
        ids, versions = await request.app[keys.RENDER_CACHE].page_checks.run(
            (ctx.user_id, ctx.project_id, ctx.roles, query),
            lambda: compute.list_server_versions(
                ctx,
                limit=query.limit + 1,
                marker=query.marker,
                filters=query.filters,
                all_projects=query.all_projects,
                project=query.project,
            ),
        )
        body = pages.get((*scope, bytes(ids), bytes(versions)))
        if body is not None:
            return collection_response(fmt, body)
    # the page is rendered from (and kept under) the rows of this query, which gives their
    # order: the arrays above only ever find what such rows made
    rows = await compute.list_servers(
        ctx,
        limit=query.limit + 1,
        marker=query.marker,
        filters=query.filters,
        all_projects=query.all_projects,
        project=query.project,
    )
    page, links = split_page(request, rows, query.limit)
    items = await _detailed(request, ctx, page)
    body = collection_body(fmt, "servers", items, links)
    if len(items) == len(page):  # a server missing from the fetch is not kept so
        pages.put((*scope, *packed_versions(rows)), body)
    return collection_response(fmt, body)


def _render_scope(request: web.Request, ctx: RequestContext) -> str:
    """Everything a server's detailed representation depends on besides the server, in one
    string: a string caches its hash, so a page of lookups hashes only (scope, id, version)
    tuples of cheap parts. Callers who may see different extension members (an
    administrator, a member) have entries of their own."""
    return _scope_string(
        response_format(request), base_url(request), ctx.project_id, extended_view(request)
    )


@functools.lru_cache(maxsize=1024)
def _scope_string(fmt: Format, base: str, project_id: str, extended: view.Extended) -> str:
    """One string object per scope: its hash is computed once, not per request."""
    return f"server|{fmt}|{base}|{project_id}|{extended!r}"


async def _detailed(
    request: web.Request, ctx: RequestContext, page: Sequence[ServerEntry]
) -> list[bytes]:
    """Serialized detailed representations of a page, from the render cache where the
    server is unchanged (same version), else fetched and rendered now."""
    cache = request.app[keys.RENDER_CACHE]
    base = base_url(request)
    fmt = response_format(request)
    extended = extended_view(request)
    scope = _render_scope(request, ctx)

    def key(server_id: object, version: int) -> tuple[object, ...]:
        return (scope, server_id, version)

    items = [cache.get(key(r.id, r.version)) for r in page]
    missing = [r.id for r, item in zip(page, items, strict=True) if item is None]
    if missing:
        fresh = {row.id: row for row in await keys.compute(request).load_servers(ctx, missing)}
        for i, summary in enumerate(page):
            row = fresh.get(summary.id)
            if items[i] is None and row is not None:
                server = view.detail(row, base, ctx.project_id, extended)
                items[i] = render_item(fmt, "server", server)
                cache.put(key(row.id, row.version), items[i])  # type: ignore[arg-type]
    return [item for item in items if item is not None]


@routes.post(collection("/servers"))
async def create(request: web.Request) -> web.Response:
    """One server, or several (os-multiple-create): the answer is then the first of them,
    or with ``return_reservation_id`` only the reservation they share (nova's answers)."""
    ctx = keys.context(request)
    body = validate(CreateServerBody, await read_body(request))
    authorize(request, "servers:create")
    created = await keys.compute(request).create_servers(ctx, body.server)
    if body.server.return_reservation_id:
        return render(
            request,
            {"reservation_id": created.reservation_id},
            status=202,
            xml_body={"server": {"reservation_id": created.reservation_id}},
        )
    server = view.created(created.ids[0], created.admin_pass, base_url(request), ctx.project_id)
    return render(
        request,
        {"server": server},
        status=202,
        headers={"Location": server["links"][0]["href"]},
        xml_body={"server": {**server, "metadata": {}}},  # the XML sample (Ex 2.6) has it
    )


@routes.get(member("/servers/{server_id}"))
async def show(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    row = await keys.compute(request).get_server(ctx, request.match_info["server_id"])
    server = view.detail(row, base_url(request), ctx.project_id, extended_view(request))
    return render(request, {"server": server})


@routes.put(member("/servers/{server_id}"))
async def update(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    body = validate(UpdateServerBody, await read_body(request))
    authorize(request, "servers:update")
    row = await keys.compute(request).update_server(
        ctx, request.match_info["server_id"], body.server
    )
    server = view.detail(row, base_url(request), ctx.project_id, view.UNDECORATED)
    return render(request, {"server": server})


@routes.put(member("/servers/"))
@routes.delete(member("/servers/"))
async def blank_id(request: web.Request) -> web.Response:
    """``PUT``/``DELETE /servers/``: a server with an empty id, which none has (404, as nova
    answered, rather than 405 for the collection; ``GET /servers/`` is the list)."""
    raise NotFound("Instance could not be found.")


@routes.delete(member("/servers/{server_id}"))
async def delete(request: web.Request) -> web.Response:
    ctx = keys.context(request)
    authorize(request, "servers:delete")
    await keys.compute(request).delete_server(ctx, request.match_info["server_id"])
    return web.Response(status=204)
