"""Conformance cases of the rest of chapters 1–2: limits, extensions, faults of every kind,
servers and images in error, update, addresses, actions, images, metadata."""

from __future__ import annotations

import json
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from api_gateway.app import create_app
from api_gateway.http.middlewares import fault_middleware, request_id_middleware
from shared.db.pool import create_pool
from tests.conformance.registry import (
    FAULT,
    IMAGE_ALLOW,
    JSON,
    XML,
    allowances,
    case,
)
from tests.conformance.support import Env, Raw, request_body
from tests.conftest import IMAGE, test_settings
from tests.support.gateway import gateway_of_its_own, serving

EXTENSION_ALLOW = allowances(missing_rels=("describedby",))
#: an embedded image or flavor shows id and links only (tempest's schemas forbid a name)
EMBEDDED_ALLOW = allowances(missing=("progress", "image.name", "flavor.name"))
#: Ex 2.31/2.32 show no ``updated``; a rebuilt server was just updated, and says when
REBUILD_ALLOW = allowances(missing=("progress", "image.name", "flavor.name"), extra=("updated",))


@asynccontextmanager
async def _gateway(env: Env, **overrides: object) -> AsyncIterator[str]:
    """Another gateway on the shared system's database and bus, with other settings."""
    async with gateway_of_its_own(env.system, Path(tempfile.mkdtemp()), **overrides) as url:
        yield url


async def _act(env: Env, server_id: str, sample: str, accept: str = JSON) -> Raw:
    content_type = XML if sample.endswith(".xml") else JSON
    return await env.call(
        "POST",
        env.v2(f"/servers/{server_id}/action"),
        body=request_body(sample),
        content_type=content_type,
        accept=accept,
    )


# --- limits and extensions -----------------------------------------------------------------

_RATES = '(POST, "*", .*, 10, MINUTE);(GET, "*changes-since*", changes-since, 3, MINUTE)'


@case(
    "1.20-limits-xml",
    covers=("1.20-limit-response.xml",),
    status=200,
    compare="1.20-limit-response.xml",
    allow=allowances(extra=("absolute.limit",)),
)
async def limits_xml(env: Env) -> Raw:
    async with _gateway(env, rate_limits=_RATES) as url:
        return await env.call("GET", f"{url}/v2/{env.tenant}/limits", accept=XML)


@case(
    "1.21-limits-json",
    covers=("1.21-limit-response.json",),
    status=200,
    compare="1.21-limit-response.json",
)
async def limits_json(env: Env) -> Raw:
    async with _gateway(env, rate_limits=_RATES) as url:
        return await env.call("GET", f"{url}/v2/{env.tenant}/limits")


@case(
    "1.34-extensions-xml",
    covers=("1.34-extensions-response.xml",),
    status=200,
    compare="1.34-extensions-response.xml",
    allow=EXTENSION_ALLOW,
)
async def extensions_xml(env: Env) -> Raw:
    return await env.call("GET", env.v2("/extensions"), accept=XML)


@case(
    "1.35-extensions-json",
    covers=("1.35-extensions-response.json",),
    status=200,
    compare="1.35-extensions-response.json",
    allow=EXTENSION_ALLOW,
)
async def extensions_json(env: Env) -> Raw:
    return await env.call("GET", env.v2("/extensions"))


@case(
    "1.36-extension-xml",
    covers=("1.36-extension-response.xml",),
    status=200,
    compare="1.36-extension-response.xml",
    allow=EXTENSION_ALLOW,
)
async def extension_xml(env: Env) -> Raw:
    return await env.call("GET", env.v2("/extensions/os-admin-actions"), accept=XML)


@case(
    "1.37-extension-json",
    covers=("1.37-extension-response.json",),
    status=200,
    compare="1.37-extension-response.json",
    allow=EXTENSION_ALLOW,
)
async def extension_json(env: Env) -> Raw:
    return await env.call("GET", env.v2("/extensions/os-admin-actions"))


# --- faults that need their situation made -------------------------------------------------


async def _unexpected(request: web.Request) -> web.Response:
    raise RuntimeError("a bug the fault middleware must turn into a computeFault")


@asynccontextmanager
async def _failing_app() -> AsyncIterator[str]:
    """The gateway's own middlewares around a handler with a bug."""
    app = web.Application(middlewares=[request_id_middleware, fault_middleware])
    app.router.add_get("/boom", _unexpected)
    async with serving(app) as url:
        yield url


for _fmt, _accept in (("json", JSON), ("xml", XML)):
    _guide = "1.43-fault-response.json" if _fmt == "json" else "1.42-fault-response.xml"

    async def _compute_fault(env: Env, accept: str = _accept) -> Raw:
        async with _failing_app() as url:
            return await env.call("GET", f"{url}/boom", accept=accept, token=False)

    for _sample in (_guide, f"extra/faults/computeFault.{_fmt}"):
        case(
            f"computeFault-{_sample}", covers=(_sample,), status=500, compare=_sample, allow=FAULT
        )(_compute_fault)

    async def _over_limit(env: Env, accept: str = _accept) -> Raw:
        async with _gateway(env, rate_limits='(PUT, "*", .*, 1, MINUTE)') as url:
            path = f"{url}/v2/{env.tenant}/servers/{uuid.uuid4()}"
            await env.call("PUT", path, body=b"{}", content_type=JSON)
            return await env.call("PUT", path, body=b"{}", content_type=JSON, accept=accept)

    _guide = (
        "1.47-fault-response-over-limit.json"
        if _fmt == "json"
        else ("1.46-fault-response-over-limit.xml")
    )
    for _sample in (_guide, f"extra/faults/overLimit.{_fmt}"):
        case(f"overLimit-{_sample}", covers=(_sample,), status=413, compare=_sample, allow=FAULT)(
            _over_limit
        )

    async def _service_unavailable(env: Env, accept: str = _accept) -> Raw:
        """A gateway whose database is down (nothing listens where it points): 503, not a
        hang and not a 500."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        pool = await create_pool(f"postgresql://postgres@127.0.0.1:{port}/gone", min_size=0)
        try:
            settings = test_settings(Path(tempfile.mkdtemp()))
            app = create_app(settings, pool=pool, bus=env.system.bus)
            async with serving(app) as url:
                return await env.call("GET", f"{url}/v2/{env.tenant}/servers", accept=accept)
        finally:
            await pool.close()

    _file = f"extra/faults/serviceUnavailable.{_fmt}"
    case(f"serviceUnavailable-{_fmt}", covers=(_file,), status=503, compare=_file, allow=FAULT)(
        _service_unavailable
    )

    async def _build_in_progress(env: Env, accept: str = _accept) -> Raw:
        """An action on a server that is still being built."""
        assert env.system.pool is not None
        server_id = uuid.uuid4()
        await env.system.pool.execute(
            """INSERT INTO servers (id, tenant_id, user_id, name, image_id, flavor_id, vcpus,
                                    ram_mb, disk_gb, vm_state, task_state)
               VALUES ($1, $2, 'alice', 'building', $3, '1', 1, 512, 1, 'building',
                       'scheduling')""",
            server_id,
            env.tenant,
            uuid.UUID(IMAGE),
        )
        try:
            return await env.call(
                "POST",
                env.v2(f"/servers/{server_id}/action"),
                body=b'{"reboot": {"type": "HARD"}}',
                content_type=JSON,
                accept=accept,
            )
        finally:
            await env.system.pool.execute("DELETE FROM servers WHERE id = $1", server_id)

    _file = f"extra/faults/buildInProgress.{_fmt}"
    case(f"buildInProgress-{_fmt}", covers=(_file,), status=409, compare=_file, allow=FAULT)(
        _build_in_progress
    )

    async def _resize_in_progress(env: Env, accept: str = _accept) -> Raw:
        """An action on a server whose resize waits for confirmation."""
        server_id = await env.server()
        resize = await env.call(
            "POST",
            env.v2(f"/servers/{server_id}/action"),
            body=b'{"resize": {"flavorRef": "2"}}',
            content_type=JSON,
        )
        assert resize.status == 202, resize.body
        await env.wait_for(server_id, "VERIFY_RESIZE")
        reply = await env.call(
            "POST",
            env.v2(f"/servers/{server_id}/action"),
            body=b'{"reboot": {"type": "SOFT"}}',
            content_type=JSON,
            accept=accept,
        )
        await env.call(
            "POST",
            env.v2(f"/servers/{server_id}/action"),
            body=b'{"confirmResize": null}',
            content_type=JSON,
        )
        await env.wait_for(server_id, "ACTIVE")
        return reply

    _file = f"extra/faults/backupOrResizeInProgress.{_fmt}"
    case(
        f"backupOrResizeInProgress-{_fmt}", covers=(_file,), status=409, compare=_file, allow=FAULT
    )(_resize_in_progress)

    async def _resize_not_allowed(env: Env, accept: str = _accept) -> Raw:
        """A resize to a smaller disk."""
        server_id = await env.server(flavorRef="2")
        return await env.call(
            "POST",
            env.v2(f"/servers/{server_id}/action"),
            body=b'{"resize": {"flavorRef": "1"}}',
            content_type=JSON,
            accept=accept,
        )

    _file = f"extra/faults/resizeNotAllowed.{_fmt}"
    case(f"resizeNotAllowed-{_fmt}", covers=(_file,), status=403, compare=_file, allow=FAULT)(
        _resize_not_allowed
    )

    async def _no_capacity(env: Env, accept: str = _accept) -> Raw:
        """A flavor no host could ever hold."""
        assert env.system.pool is not None
        flavor = f"giant-{uuid.uuid4().hex[:6]}"
        await env.system.pool.execute(
            "INSERT INTO flavors (id, name, ram_mb, disk_gb, vcpus) VALUES ($1, $1, 99999999,"
            " 1, 1)",
            flavor,
        )
        try:
            body = {"server": {"name": "giant", "imageRef": IMAGE, "flavorRef": flavor}}
            return await env.call(
                "POST",
                env.v2("/servers"),
                body=json.dumps(body).encode(),
                content_type=JSON,
                accept=accept,
            )
        finally:
            await env.system.pool.execute("DELETE FROM flavors WHERE id = $1", flavor)

    _file = f"extra/faults/serverCapacityUnavailable.{_fmt}"
    case(
        f"serverCapacityUnavailable-{_fmt}", covers=(_file,), status=503, compare=_file, allow=FAULT
    )(_no_capacity)

    async def _item_not_found(env: Env, accept: str = _accept) -> Raw:
        return await env.call("GET", env.v2(f"/images/{uuid.uuid4()}"), accept=accept)

    _file = f"extra/faults/itemNotFound.{_fmt}"
    case(f"itemNotFound-{_fmt}", covers=(_file,), status=404, compare=_file, allow=FAULT)(
        _item_not_found
    )


# --- servers and images in error -----------------------------------------------------------


async def _server_in_error(env: Env) -> str:
    """A server whose build failed: the cloud had no room for it at the time."""
    assert env.system.pool is not None
    flavor = f"big-{uuid.uuid4().hex[:6]}"
    await env.system.pool.execute(
        "INSERT INTO flavors (id, name, ram_mb, disk_gb, vcpus) VALUES ($1, $1, 60000, 1, 1)",
        flavor,
    )
    try:
        await env.server(flavorRef=flavor)
        body = {"server": {"name": "no-room", "imageRef": IMAGE, "flavorRef": flavor}}
        reply = await env.call(
            "POST", env.v2("/servers"), body=json.dumps(body).encode(), content_type=JSON
        )
        server_id: str = reply.json()["server"]["id"]
        env.created.append(server_id)
        await env.wait_for(server_id, "ERROR")
        return server_id
    finally:
        await env.system.pool.execute("DELETE FROM flavors WHERE id = $1", flavor)


#: Ex 1.48/1.49 show only what the fault is about; a real server in ERROR has all of its
#: members, and its image and flavor carry their links
ERROR_SERVER_ALLOW = allowances(
    extra=(
        "updated",
        "accessIPv4",
        "accessIPv6",
        "addresses",
        "metadata",
        "image.links",
        "flavor.links",
        "key_name",
        "config_drive",
    ),
    missing=("progress", "fault.details"),
    extra_rels=("self", "bookmark"),
)


@case(
    "1.48-server-in-error-xml",
    covers=("1.48-server-in-error-state.xml",),
    status=200,
    compare="1.48-server-in-error-state.xml",
    allow=ERROR_SERVER_ALLOW,
)
async def server_error_xml(env: Env) -> Raw:
    server_id = await _server_in_error(env)
    return await env.call("GET", env.v2(f"/servers/{server_id}"), accept=XML)


@case(
    "1.49-server-in-error-json",
    covers=("1.49-server-in-error-state.json",),
    status=200,
    compare="1.49-server-in-error-state.json",
    allow=ERROR_SERVER_ALLOW,
)
async def server_error_json(env: Env) -> Raw:
    server_id = await _server_in_error(env)
    return await env.call("GET", env.v2(f"/servers/{server_id}"))


async def _image_in_error(env: Env) -> str:
    """A snapshot whose saving failed (as the conductor records it), made from a server."""
    assert env.system.pool is not None
    server_id = await env.server()
    image_id = uuid.uuid4()
    await env.system.pool.execute(
        """INSERT INTO images (id, name, status, progress, owner, server_id, image_type,
                               fault_code, fault_message, fault_details, fault_created_at)
           VALUES ($1, 'My Server Backup', 'killed', 89, $2, $3, 'snapshot', 500,
                   'An internal error occured', 'Error details', now())""",
        image_id,
        env.tenant,
        uuid.UUID(server_id),
    )
    return str(image_id)


IMAGE_ERROR_ALLOW = allowances(
    extra=("updated", "minDisk", "minRam", "metadata", "server.links", "fault.created"),
    missing=("tenant_id", "user_id"),
    extra_rels=("self", "bookmark"),
)


@case(
    "1.50-image-in-error-xml",
    covers=("1.50-image-in-error-state.xml",),
    status=200,
    compare="1.50-image-in-error-state.xml",
    allow=IMAGE_ERROR_ALLOW,
)
async def image_error_xml(env: Env) -> Raw:
    image_id = await _image_in_error(env)
    return await env.call("GET", env.v2(f"/images/{image_id}"), accept=XML)


@case(
    "1.51-image-in-error-json",
    covers=("1.51-image-in-error-state.json",),
    status=200,
    compare="1.51-image-in-error-state.json",
    allow=IMAGE_ERROR_ALLOW,
)
async def image_error_json(env: Env) -> Raw:
    image_id = await _image_in_error(env)
    return await env.call("GET", env.v2(f"/images/{image_id}"))


# --- update -----------------------------------------------------------------------------------


def _update_case(request: str, response: str) -> None:
    accept = XML if response.endswith(".xml") else JSON

    async def run(env: Env) -> Raw:
        server_id = await env.server()
        content_type = XML if request.endswith(".xml") else JSON
        return await env.call(
            "PUT",
            env.v2(f"/servers/{server_id}"),
            body=request_body(request),
            content_type=content_type,
            accept=accept,
        )

    case(
        f"update-{request}",
        covers=(request, response),
        status=200,
        compare=response,
        allow=EMBEDDED_ALLOW,
    )(run)


_update_case("2.13-server-update-name-request.xml", "2.15-server-update-name-response.xml")
_update_case("2.14-server-update-name-request.json", "2.16-server-update-name-response.json")
_update_case(
    "2.17-server-update-access-address-request.xml",
    "2.19-server-update-access-address-response.xml",
)
_update_case(
    "2.18-server-update-access-address-request.json",
    "2.20-server-update-access-address-response.json",
)


# --- addresses ----------------------------------------------------------------------------------


@case(
    "2.21-addresses-xml",
    covers=("2.21-addresses-list-response.xml",),
    status=200,
    compare="2.21-addresses-list-response.xml",
)
async def addresses_xml(env: Env) -> Raw:
    server_id = await env.server()
    return await env.call("GET", env.v2(f"/servers/{server_id}/ips"), accept=XML)


@case(
    "2.22-addresses-json",
    covers=("2.22-addresses-list-response.json",),
    status=200,
    compare="2.22-addresses-list-response.json",
)
async def addresses_json(env: Env) -> Raw:
    server_id = await env.server()
    return await env.call("GET", env.v2(f"/servers/{server_id}/ips"))


@case(
    "2.23-network-xml",
    covers=("2.23-list-addresses-by-network-response.xml",),
    status=200,
    compare="2.23-list-addresses-by-network-response.xml",
)
async def network_xml(env: Env) -> Raw:
    server_id = await env.server()
    return await env.call("GET", env.v2(f"/servers/{server_id}/ips/private"), accept=XML)


@case(
    "2.24-network-json-nova-form",
    covers=("nova-2013.1/server-ips-network-resp.json",),
    status=200,
    compare="nova-2013.1/server-ips-network-resp.json",
)
async def network_json(env: Env) -> Raw:
    server_id = await env.server()
    return await env.call("GET", env.v2(f"/servers/{server_id}/ips/private"))


# --- actions ----------------------------------------------------------------------------------


def _action_case(request: str, status: int, *, setup: str | None = None) -> None:
    """The guide's action request is accepted with ``status`` (``setup``: an action that must
    have run first, e.g. a resize before its confirmation)."""

    async def run(env: Env) -> Raw:
        server_id = await env.server()
        if setup is not None:
            first = await env.call(
                "POST",
                env.v2(f"/servers/{server_id}/action"),
                body=setup.encode(),
                content_type=JSON,
            )
            assert first.status == 202, first.body
            await env.wait_for(server_id, "VERIFY_RESIZE")
        return await _act(env, server_id, request)

    case(f"action-{request}", covers=(request,), status=status)(run)


_RESIZE_FIRST = '{"resize": {"flavorRef": "2"}}'
for _request in (
    "2.25-action-change-password-request.xml",
    "2.26-action-change-password-request.json",
    "2.27-action-reboot-request.xml",
    "2.28-action-reboot-request.json",
    "2.33-action-resize-request.xml",
    "2.34-action-resize-request.json",
    "2.39-action-create-image-request.xml",
    "2.40-action-create-image-request.json",
):
    _action_case(_request, 202)
for _request in (
    "2.35-action-confirm-resize-request.xml",
    "2.36-action-confirm-resize-request.json",
):
    _action_case(_request, 204, setup=_RESIZE_FIRST)
for _request in ("2.37-action-revert-resize-request.xml", "2.38-action-revert-resize-request.json"):
    _action_case(_request, 202, setup=_RESIZE_FIRST)


@case(
    "2.31-rebuild-xml",
    covers=("2.29-action-rebuild-request.xml", "2.31-action-rebuild-response.xml"),
    status=202,
    compare="2.31-action-rebuild-response.xml",
    allow=REBUILD_ALLOW,
)
async def rebuild_xml(env: Env) -> Raw:
    server_id = await env.server()
    return await _act(env, server_id, "2.29-action-rebuild-request.xml", accept=XML)


@case(
    "2.32-rebuild-json",
    covers=("2.30-action-rebuild-request.json", "2.32-action-rebuild-response.json"),
    status=202,
    compare="2.32-action-rebuild-response.json",
    allow=REBUILD_ALLOW,
)
async def rebuild_json(env: Env) -> Raw:
    server_id = await env.server()
    return await _act(env, server_id, "2.30-action-rebuild-request.json")


# --- images -------------------------------------------------------------------------------------


async def _snapshot(env: Env) -> str:
    """An image made from a server (so it shows ``server``), with metadata."""
    server_id = await env.server()
    reply = await env.call(
        "POST",
        env.v2(f"/servers/{server_id}/action"),
        body=request_body("2.40-action-create-image-request.json"),
        content_type=JSON,
    )
    assert reply.status == 202, reply.body
    return str(reply.headers["Location"]).rsplit("/", 1)[-1]


@case(
    "2.45-images-detail-xml",
    covers=("2.45-images-list-response-detail.xml",),
    status=200,
    compare="2.45-images-list-response-detail.xml",
    allow=IMAGE_ALLOW,
)
async def images_xml(env: Env) -> Raw:
    await _snapshot(env)
    return await env.call("GET", env.v2("/images/detail"), accept=XML)


@case(
    "2.46-images-detail-json",
    covers=("2.46-images-list-response-detail.json",),
    status=200,
    compare="2.46-images-list-response-detail.json",
    allow=IMAGE_ALLOW,
)
async def images_json(env: Env) -> Raw:
    await _snapshot(env)
    return await env.call("GET", env.v2("/images/detail"))


_IMAGE_SHOW_ALLOW = allowances(missing=("tenant_id", "user_id"), extra=("metadata",))


@case(
    "2.47-image-xml",
    covers=("2.47-image-details-response.xml",),
    status=200,
    compare="2.47-image-details-response.xml",
    allow=_IMAGE_SHOW_ALLOW,
)
async def image_xml(env: Env) -> Raw:
    image_id = await _snapshot(env)
    return await env.call("GET", env.v2(f"/images/{image_id}"), accept=XML)


@case(
    "2.48-image-json",
    covers=("2.48-image-details-response.json",),
    status=200,
    compare="2.48-image-details-response.json",
    allow=_IMAGE_SHOW_ALLOW,
)
async def image_json(env: Env) -> Raw:
    image_id = await _snapshot(env)
    return await env.call("GET", env.v2(f"/images/{image_id}"))


# --- metadata (servers and images alike) --------------------------------------------------------


def _metadata_case(
    method: str, path: str, request: str | None, response: str, covers: tuple[str, ...]
) -> None:
    accept = XML if response.endswith(".xml") else JSON
    for resource in ("servers", "images"):

        async def run(env: Env, resource: str = resource) -> Raw:
            item = await env.server() if resource == "servers" else await _snapshot(env)
            base = env.v2(f"/{resource}/{item}/metadata")
            seed = b'{"metadata": {"Label": "Web", "Version": "2.1"}}'
            assert (await env.call("PUT", base, body=seed, content_type=JSON)).status == 200
            content_type = XML if request and request.endswith(".xml") else JSON
            return await env.call(
                method,
                base + path,
                body=request_body(request) if request else None,
                content_type=content_type if request else None,
                accept=accept,
            )

        case(
            f"{resource}-metadata-{response}-{method}", covers=covers, status=200, compare=response
        )(run)


_metadata_case(
    "GET", "", None, "2.49-metadata-list-response.xml", ("2.49-metadata-list-response.xml",)
)
_metadata_case(
    "GET", "", None, "2.50-metadata-list-response.json", ("2.50-metadata-list-response.json",)
)
_metadata_case(
    "PUT",
    "",
    "2.51-set-metadata-request.xml",
    "2.53-set-metadata-response.xml",
    ("2.51-set-metadata-request.xml", "2.53-set-metadata-response.xml"),
)
_metadata_case(
    "PUT",
    "",
    "2.52-set-metadata-request.json",
    "2.54-set-metadata-response.json",
    ("2.52-set-metadata-request.json", "2.54-set-metadata-response.json"),
)
_metadata_case(
    "POST",
    "",
    "2.55-update-metadata-request.xml",
    "2.57-update-metadata-response.xml",
    ("2.55-update-metadata-request.xml", "2.57-update-metadata-response.xml"),
)
_metadata_case(
    "POST",
    "",
    "2.56-update-metadata-request.json",
    "2.58-update-metadata-response.json",
    ("2.56-update-metadata-request.json", "2.58-update-metadata-response.json"),
)
_metadata_case(
    "GET", "/Label", None, "2.59-metadata-item-response.xml", ("2.59-metadata-item-response.xml",)
)
_metadata_case(
    "GET", "/Label", None, "2.60-metadata-item-response.json", ("2.60-metadata-item-response.json",)
)
_metadata_case(
    "PUT",
    "/Label",
    "2.61-set-metadata-item-request.xml",
    "2.63-set-metadata-item-response.xml",
    ("2.61-set-metadata-item-request.xml", "2.63-set-metadata-item-response.xml"),
)
_metadata_case(
    "PUT",
    "/Label",
    "2.62-set-metadata-item-request.json",
    "2.64-set-metadata-item-response.json",
    ("2.62-set-metadata-item-request.json", "2.64-set-metadata-item-response.json"),
)
