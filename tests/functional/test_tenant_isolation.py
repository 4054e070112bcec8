"""Tenant isolation on every route the gateway serves.

A project ("victim") owns an ACTIVE server with metadata, a snapshot of it, a deleted server
and a deleted snapshot. A member of another project ("intruder", with the *same user name*,
so nothing keyed on the user alone can let it through) then sends every request that names
one of the victim's ids: in the path, in the body (``imageRef``) or in the query (``marker``,
filters), in JSON and in XML (by ``Accept`` and by ``.json``/``.xml`` suffix), at the
versioned and at the bookmark URL, and under the victim's own project URL.

The property asserted is "no existence leak": the answer for the victim's id (of a live
resource, and of a deleted one) is the same, status, media type and body byte for byte (ids
substituted), as the answer for an id that exists nowhere; and that answer is the expected
v2 fault (404 itemNotFound for ids in the path, 400 badRequest for ids in a body or as a
marker, 403 forbidden for the administrators' operations, which refuse before looking, and
for the victim's project URL). The victim's rows (servers, metadata, addresses, images,
actions, migrations...) and the intruder's are compared before and after each request:
nothing may change.

Lists seen by the intruder (``/servers``, ``/images``, the image service's, with filters,
``changes-since`` and ``all_tenants``) never name anything of the victim's, while the same
query by the victim does (so each query is one that would show a leak).

The route table is checked against the gateway's router: a route added to the gateway
without a case here (or a documented exclusion) fails ``test_every_gateway_route_is_covered``.
"""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api_gateway.app import create_app
from api_gateway.auth.policy import OPERATIONS, Rule
from api_gateway.compute.actions.table import ACTION_TABLE
from stratus.system import System
from tests.conftest import IMAGE
from tests.conftest import test_settings as settings_for
from tests.support.actions import wait_for_image, wait_until_action_done
from tests.support.client import ComputeClient

NS = "http://docs.openstack.org/compute/api/v1.1"
JSON = "application/json"
XML = "application/xml"
HOST = "functional-host"
SINCE = "2000-01-01T00:00:00Z"
#: the victim's metadata key, on its server and on its snapshot
KEY = "owner"

# --- the victim and the intruder ---------------------------------------------------------


@dataclass(frozen=True)
class Victim:
    """What the victim owns, and what the intruder has of its own."""

    tenant: str
    server_id: str
    image_id: str
    request_id: str
    network: str
    deleted_server_id: str
    deleted_image_id: str
    deleted_request_id: str
    owner: ComputeClient
    intruder: ComputeClient
    intruder_server_id: str

    def secrets(self) -> dict[str, str]:
        """Strings that must never appear in an answer to the intruder."""
        return {
            "victim's project": self.tenant,
            "victim's server": self.server_id,
            "victim's snapshot": self.image_id,
            "victim's request id": self.request_id,
            "victim's deleted server": self.deleted_server_id,
            "victim's deleted snapshot": self.deleted_image_id,
            "victim's deleted server's request id": self.deleted_request_id,
        }


async def _created(api: ComputeClient, name: str, flavor: str, **extra: Any) -> tuple[str, str]:
    """An ACTIVE server of ``api``'s project, and the request id that created it."""
    reply = await api.create_server(name, IMAGE, flavor, **extra)
    assert reply.status == 202, reply
    server_id: str = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    return server_id, str(reply.headers["X-Compute-Request-Id"])


async def _snapshot_of(api: ComputeClient, server_id: str, name: str) -> str:
    reply = await api.post(
        f"/servers/{server_id}/action",
        {"createImage": {"name": name, "metadata": {KEY: "victim"}}},
    )
    assert reply.status == 202, reply
    image_id: str = reply.headers["Location"].rsplit("/", 1)[-1]
    await wait_for_image(api, image_id, "ACTIVE")
    return image_id


@pytest.fixture(scope="module")
async def victim(system: System, http: aiohttp.ClientSession) -> Victim:
    """Built once for the module: every test only reads it (and proves it did)."""
    assert system.pool is not None
    suffix = uuid.uuid4().hex[:8]
    owner = ComputeClient(http, system.url, f"victim-{suffix}", "alice")
    intruder = ComputeClient(http, system.url, f"intruder-{suffix}", "alice")
    # flavor 2 for the victim, 1 for the intruder: /limits tells whose usage it counts
    server_id, request_id = await _created(
        owner, "victim-box", "2", metadata={KEY: "victim", "secret": "s3cr3t"}
    )
    image_id = await _snapshot_of(owner, server_id, "victim-snap")
    gone_image_id = await _snapshot_of(owner, server_id, "victim-gone-snap")
    assert (await owner.delete(f"/images/{gone_image_id}")).status == 204
    gone_server_id, gone_request_id = await _created(owner, "victim-gone", "1")
    await owner.delete_and_wait(gone_server_id)
    intruder_server_id, _ = await _created(intruder, "intruder-box", "1")
    for sid in (server_id, gone_server_id, intruder_server_id):
        await wait_until_action_done(system.pool, sid)
    (network, *_) = (await owner.get(f"/servers/{server_id}/ips")).body["addresses"]
    return Victim(
        tenant=owner.tenant,
        server_id=server_id,
        image_id=image_id,
        request_id=request_id,
        network=network,
        deleted_server_id=gone_server_id,
        deleted_image_id=gone_image_id,
        deleted_request_id=gone_request_id,
        owner=owner,
        intruder=intruder,
        intruder_server_id=intruder_server_id,
    )


#: the victim's and the intruder's servers and images ($1: both projects)
_THEIRS = "SELECT id FROM servers WHERE tenant_id = ANY($1::text[])"
_THEIR_IMAGES = f"SELECT id FROM images WHERE owner = ANY($1::text[]) OR server_id IN ({_THEIRS})"
#: table -> (which of its rows, their order, which columns): the victim's and the intruder's
#: rows, whole; and whether each compute host is enabled
_FOOTPRINT = {
    "servers": (f"id IN ({_THEIRS})", "id", "t"),
    "server_metadata": (f"server_id IN ({_THEIRS})", "server_id, key", "t"),
    "server_addresses": (f"server_id IN ({_THEIRS})", "server_id, network, address", "t"),
    "server_faults": (f"server_id IN ({_THEIRS})", "id", "t"),
    "fixed_ips": (f"server_id IN ({_THEIRS})", "address", "t"),
    "images": (f"id IN ({_THEIR_IMAGES})", "id", "t"),
    "image_metadata": (f"image_id IN ({_THEIR_IMAGES})", "image_id, key", "t"),
    "actions": (f"tenant_id = ANY($1::text[]) OR server_id IN ({_THEIRS})", "id", "t"),
    "migrations": (f"server_id IN ({_THEIRS})", "id", "t"),
    # os-hosts could disable one (its usage is left out: other projects' servers change it)
    "compute_hosts": ("true", "name", "jsonb_build_object('name', t.name, 'on', t.enabled)"),
    # key pairs are the user's (both are "alice"): the intruder's requests must change none
    "key_pairs": ("user_id = 'alice'", "name", "t"),
}
_FOOTPRINT_QUERY = "SELECT jsonb_build_object({})::text".format(
    ", ".join(
        f"'{table}', (SELECT COALESCE(jsonb_agg(to_jsonb({columns}) ORDER BY {order}), '[]')"
        f" FROM {table} t WHERE {where})"
        for table, (where, order, columns) in _FOOTPRINT.items()
    )
)


async def _footprint(system: System, victim: Victim) -> dict[str, Any]:
    """Every row the victim or the intruder owns, or that hangs off one of their servers
    (an intruder's action on the victim's server would be recorded under the intruder's
    project, a snapshot under the victim's), and the compute hosts; in one round trip, as
    it is taken several times per test."""
    assert system.pool is not None
    text = await system.pool.fetchval(_FOOTPRINT_QUERY, [victim.tenant, victim.intruder.tenant])
    footprint: dict[str, Any] = json.loads(text)
    return footprint


# --- sending a request in a format, at a URL form ------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    text: str
    #: the response's headers but those that differ on every response
    headers: tuple[tuple[str, str], ...] = ()


#: headers that differ on every response, whatever was asked
_PER_RESPONSE = frozenset({"date", "x-compute-request-id", "x-openstack-request-id"})


#: how the intruder addresses the route: its own project's versioned URL (the format in
#: ``Accept``, or as a ``.json``/``.xml`` suffix), its bookmark URL (the version in the media
#: type), or the victim's project's URL
SCOPES = ("own", "suffix", "bookmark", "victims-url")


def _url(base: str, tenant: str, path: str, *, fmt: str, scope: str, project_url: bool) -> str:
    if not project_url:
        return f"{base}{path}"
    if scope == "bookmark":
        return f"{base}/{tenant}{path}"
    if scope == "suffix":
        resource, question, query = path.partition("?")
        path = f"{resource}.{fmt}{question}{query}"
    return f"{base}/v2/{tenant}{path}"


def _headers(token: str, fmt: str, scope: str, has_body: bool) -> dict[str, str]:
    media = XML if fmt == "xml" else JSON
    accept = media
    if scope == "bookmark":
        accept = f"application/vnd.openstack.compute+{fmt};version=2"
    elif scope == "suffix":
        accept = "*/*"  # the suffix decides
    headers = {"X-Auth-Token": token, "Accept": accept}
    if has_body:
        headers["Content-Type"] = media
    return headers


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _meta(parent: ET.Element, metadata: Mapping[str, str]) -> None:
    for key, value in metadata.items():
        ET.SubElement(parent, "meta", key=key).text = value


def to_xml(body: Mapping[str, Any]) -> bytes:
    """The XML form of a JSON request body, as the guide writes them: the root element names
    the top-level member, scalars are attributes, ``metadata`` is ``<meta key>`` children."""
    ((root, value),) = body.items()
    element = ET.Element(root, {"xmlns": NS})
    if root == "metadata":
        _meta(element, value)
    elif root == "meta":
        ((key, text),) = value.items()
        element.set("key", key)
        element.text = text
    elif isinstance(value, Mapping):
        for name, member in value.items():
            if name == "metadata":
                _meta(ET.SubElement(element, "metadata"), member)
            else:
                element.set(name, _text(member))
    return ET.tostring(element)


async def send(
    http: aiohttp.ClientSession,
    base: str,
    token: str,
    tenant: str,
    method: str,
    path: str,
    body: Mapping[str, Any] | None,
    *,
    fmt: str,
    scope: str,
    project_url: bool = True,
) -> Answer:
    data = None
    if body is not None:
        data = to_xml(body) if fmt == "xml" else json.dumps(body).encode()
    async with http.request(
        method,
        _url(base, tenant, path, fmt=fmt, scope=scope, project_url=project_url),
        data=data,
        headers=_headers(token, fmt, scope, body is not None),
    ) as response:
        headers = sorted(
            (name.lower(), value)
            for name, value in response.headers.items()
            if name.lower() not in _PER_RESPONSE
        )
        return Answer(response.status, response.content_type, await response.text(), tuple(headers))


def assert_fault(answer: Answer, fmt: str, status: int, name: str) -> None:
    """A v2 fault (guide 1.9): ``{name: {code, message}}`` or ``<name code><message>``."""
    assert (answer.status, answer.content_type) == (status, XML if fmt == "xml" else JSON), answer
    if fmt == "xml":
        root = ET.fromstring(answer.text)
        assert root.tag == f"{{{NS}}}{name}", answer.text
        assert root.get("code") == str(status), answer.text
        message = root.find(f"{{{NS}}}message")
        assert message is not None and message.text, answer.text
    else:
        body = json.loads(answer.text)
        assert list(body) == [name], body
        assert body[name]["code"] == status, body
        assert isinstance(body[name]["message"], str) and body[name]["message"], body
        assert set(body[name]) <= {"code", "message", "details"}, body


# --- the cases -----------------------------------------------------------------------------

#: A valid body for every server action, so that only the server's ownership can refuse
#: it. ``test_every_action_is_covered`` keeps this in step with the registry.
ACTION_BODIES: dict[str, Any] = {
    "changePassword": {"adminPass": "pwned-pass"},
    "reboot": {"type": "HARD"},
    "rebuild": {"imageRef": IMAGE, "name": "pwned"},
    "resize": {"flavorRef": "3"},
    "confirmResize": None,
    "revertResize": None,
    "createImage": {"name": "stolen", "metadata": {"by": "intruder"}},
    "pause": None,
    "unpause": None,
    "suspend": None,
    "resume": None,
    "lock": None,
    "unlock": None,
    "os-start": None,
    "os-stop": None,
    "createBackup": {"name": "stolen", "backup_type": "daily", "rotation": 1},
    "migrate": None,
    "os-migrateLive": {"host": HOST, "block_migration": False, "disk_over_commit": False},
    "os-resetState": {"state": "error"},
    "evacuate": {"host": HOST, "onSharedStorage": False},
    "resetNetwork": None,
    "injectNetworkInfo": None,
}

NOT_FOUND = (404, "itemNotFound")
FORBIDDEN = (403, "forbidden")
BAD_REQUEST = (400, "badRequest")
BAD_MEDIA_TYPE = (415, "badMediaType")


@dataclass(frozen=True)
class Case:
    """One request of the intruder's. ``path`` and string values of ``body`` are templates
    over the ids (``{server_id}``, ``{image_id}``, ``{request_id}``: the victim's live ones,
    its deleted ones, or ones that exist nowhere; ``{own_server_id}``: the intruder's;
    ``{key}``, ``{network}``, ``{host}``: names, the same for all). ``expect`` is the fault
    every one of them gets, or None for a 200 list.
    """

    name: str
    method: str
    path: str
    body: Any = None
    expect: tuple[int, str] | None = NOT_FOUND
    #: under /v2/{tenant_id} (False: the image service's /image/v2, the token's project)
    project_url: bool = True
    formats: tuple[str, ...] = ("json", "xml")
    scopes: tuple[str, ...] = field(default=SCOPES)

    @property
    def route(self) -> str:
        """The router's route this case exercises, as ``route_key`` names it."""
        path = self.path.split("?", 1)[0].replace("{own_server_id}", "{server_id}")
        return f"{self.method} {'/{tenant_id}' if self.project_url else ''}{path}"


def _action_case(action: str) -> Case:
    admin_only = OPERATIONS[action].rule is Rule.ADMIN
    return Case(
        f"action {action}",
        "POST",
        "/servers/{server_id}/action",
        {action: ACTION_BODIES[action]},
        FORBIDDEN if admin_only else NOT_FOUND,
    )


def _metadata_cases(owner: str, id_name: str) -> list[Case]:
    whole = f"/{owner}/{{{id_name}}}/metadata"
    one = f"{whole}/{{key}}"
    return [
        Case(f"{owner} metadata list", "GET", whole),
        Case(f"{owner} metadata replace", "PUT", whole, {"metadata": {"{key}": "intruder"}}),
        Case(f"{owner} metadata merge", "POST", whole, {"metadata": {"pwned": "yes"}}),
        Case(f"{owner} metadata show", "GET", one),
        Case(f"{owner} metadata set", "PUT", one, {"meta": {"{key}": "intruder"}}),
        Case(f"{owner} metadata delete", "DELETE", one),
    ]


def _image_service(name: str, method: str, path: str, expect: tuple[int, str]) -> Case:
    """A case of the image service's API: JSON only, the token's project (no URL forms)."""
    return Case(name, method, path, None, expect, False, ("json",), ("own",))


CASES: list[Case] = [
    # a server in the path
    Case("server show", "GET", "/servers/{server_id}"),
    Case("server update", "PUT", "/servers/{server_id}", {"server": {"name": "pwned"}}),
    *_metadata_cases("servers", "server_id"),
    Case("server ips", "GET", "/servers/{server_id}/ips"),
    Case("server ips of a network", "GET", "/servers/{server_id}/ips/{network}"),
    Case("instance actions", "GET", "/servers/{server_id}/os-instance-actions"),
    Case("instance action", "GET", "/servers/{server_id}/os-instance-actions/{request_id}"),
    *(_action_case(action) for action in ACTION_BODIES),
    # an image in the path
    Case("image show", "GET", "/images/{image_id}"),
    *_metadata_cases("images", "image_id"),
    _image_service("image service show", "GET", "/image/v2/images/{image_id}", NOT_FOUND),
    # the victim's ids where the intruder's own resources are named
    Case(
        "instance action of own server",
        "GET",
        "/servers/{own_server_id}/os-instance-actions/{request_id}",
    ),
    Case(
        "rebuild own server from image",
        "POST",
        "/servers/{own_server_id}/action",
        {"rebuild": {"imageRef": "{image_id}"}},
        BAD_REQUEST,
    ),
    Case(
        "create server from image",
        "POST",
        "/servers",
        {"server": {"name": "stolen", "imageRef": "{image_id}", "flavorRef": "1"}},
        BAD_REQUEST,
    ),
    # ... and in a query: as a marker, as a filter
    Case("servers after marker", "GET", "/servers?marker={server_id}", expect=BAD_REQUEST),
    Case(
        "servers detail after marker",
        "GET",
        "/servers/detail?marker={server_id}&changes-since=" + SINCE,
        expect=BAD_REQUEST,
    ),
    Case("images after marker", "GET", "/images?marker={image_id}", expect=BAD_REQUEST),
    Case(
        "images detail after marker",
        "GET",
        "/images/detail?marker={image_id}",
        expect=BAD_REQUEST,
    ),
    _image_service(
        "image service after marker", "GET", "/image/v2/images?marker={image_id}", BAD_REQUEST
    ),
    Case("servers built from image", "GET", "/servers/detail?image={image_id}", expect=None),
    Case("images made from server", "GET", "/images/detail?server={server_id}", expect=None),
    Case(
        "images of server since",
        "GET",
        f"/images?server={{server_id}}&changes-since={SINCE}",
        expect=None,
    ),
    # the administrators' views of the cloud: refused before any id is looked at
    Case(
        "migrations of server",
        "GET",
        "/os-migrations?instance_uuid={server_id}",
        expect=FORBIDDEN,
    ),
    Case("hosts", "GET", "/os-hosts", expect=FORBIDDEN),
    Case("host usage by project", "GET", "/os-hosts/{host}", expect=FORBIDDEN),
    Case("host disable", "PUT", "/os-hosts/{host}", {"status": "disable"}, FORBIDDEN),
    Case("services", "GET", "/os-services", expect=FORBIDDEN),
    Case(
        "service disable",
        "PUT",
        "/os-services/disable",
        {"host": "{host}", "binary": "nova-compute"},
        FORBIDDEN,
        formats=("json",),  # the JSON body is no XML document (test_services tries XML)
    ),
    Case(
        "service enable",
        "PUT",
        "/os-services/enable",
        {"host": "{host}", "binary": "nova-compute"},
        FORBIDDEN,
        formats=("json",),  # the JSON body is no XML document (test_services tries XML)
    ),
    Case(
        "service disable with a reason",
        "PUT",
        "/os-services/disable-log-reason",
        {"host": "{host}", "binary": "nova-compute", "disabled_reason": "intrusion"},
        FORBIDDEN,
        formats=("json",),  # the JSON body is no XML document (test_services tries XML)
    ),
    # key pairs are the user's, not the project's (as in nova): a name is tried in every URL
    # form, and the victim's project URL is refused
    Case("keypair show", "GET", "/os-keypairs/{name}"),
    # deletes last: should one leak, the cases above have already run against the victim
    Case("server delete", "DELETE", "/servers/{server_id}"),
    Case("image delete", "DELETE", "/images/{image_id}"),
    Case("keypair delete", "DELETE", "/os-keypairs/{name}"),
    _image_service("image service tasks", "GET", "/image/v2/images/{image_id}/tasks", NOT_FOUND),
    _image_service("image download", "GET", "/image/v2/images/{image_id}/file", NOT_FOUND),
    # a patch without its media type is refused before any image is looked up, the same for
    # every id; with it, a stranger's patch is 404 too (test_image_uploads)
    _image_service("image patch", "PATCH", "/image/v2/images/{image_id}", BAD_MEDIA_TYPE),
    # no body: an empty upload (aiohttp takes no Content-Type for application/octet-stream)
    _image_service("image upload", "PUT", "/image/v2/images/{image_id}/file", NOT_FOUND),
    _image_service("image service delete", "DELETE", "/image/v2/images/{image_id}", NOT_FOUND),
]

#: Routes the list tests below cover (with no id of the victim's to try).
LISTED = {
    "GET /{tenant_id}/servers",
    "GET /{tenant_id}/servers/detail",
    "GET /{tenant_id}/images",
    "GET /{tenant_id}/images/detail",
    "GET /image/v2/images",
    "GET /{tenant_id}/limits",
}

#: Routes with nothing a project owns, and why.
EXCLUDED = {
    "GET /": "the version list: no token, no project",
    "GET /v2": "the version details: no token, no project",
    "GET /image": "the image service's discovery: no token, no project",
    "GET /image/versions": "the image service's discovery: no token, no project",
    "GET /{tenant_id}/extensions": "the extension list: the same static document for all",
    "GET /{tenant_id}/extensions/{alias}": "one extension: static, the same for all",
    "GET /{tenant_id}/flavors": "flavors are the cloud's, shared by every project",
    "GET /{tenant_id}/flavors/detail": "flavors are the cloud's, shared by every project",
    "GET /{tenant_id}/flavors/{flavor_id}": "flavors are the cloud's, shared by every project",
    "GET /{tenant_id}/flavors/{flavor_id}/os-extra_specs": "a flavor's, readable by all",
    "GET /{tenant_id}/flavors/{flavor_id}/os-extra_specs/{key}": "a flavor's, readable by all",
    "POST /{tenant_id}/flavors/{flavor_id}/os-extra_specs": (
        "a flavor's, written by administrators only (test_flavor_extra_specs)"
    ),
    "PUT /{tenant_id}/flavors/{flavor_id}/os-extra_specs/{key}": (
        "a flavor's, written by administrators only (test_flavor_extra_specs)"
    ),
    "DELETE /{tenant_id}/flavors/{flavor_id}/os-extra_specs/{key}": (
        "a flavor's, written by administrators only (test_flavor_extra_specs)"
    ),
    "* /{path}": "the catch-all: 404, 405 or 300 for paths no route serves",
    "GET /{tenant_id}/os-quota-sets/{project}": (
        "names the project: another project's quotas are 403 to a member (test_quota_sets)"
    ),
    "GET /{tenant_id}/os-quota-sets/{project}/defaults": "the defaults, the same for all",
    "PUT /{tenant_id}/os-quota-sets/{project}": "administrators only (test_quota_sets)",
    "GET /{tenant_id}/os-keypairs": (
        "the caller's own key pairs, a user's as in nova (test_keypairs: another user's never)"
    ),
    "POST /{tenant_id}/os-keypairs": "creates the caller's own key pair (test_keypairs)",
    # a blank id or key: 404 whoever asks and whatever the owner, nothing read or changed
    # (test_nova_parity)
    "DELETE /{tenant_id}/images/": "a blank image id: always 404",
    "DELETE /{tenant_id}/servers/": "a blank server id: always 404",
    "PUT /{tenant_id}/servers/": "a blank server id: always 404",
    "DELETE /{tenant_id}/servers/{server_id}/metadata/": "a blank key: always 404, unread",
    "DELETE /{tenant_id}/images/{image_id}/metadata/": "a blank key: always 404, unread",
    "POST /image/v2/images": "creates an image of the caller's own project (test_image_uploads)",
    "GET /image/internal/images/{image_id}/file": (
        "hosts' downloads: a signed URL opens it, no token, no project (test_image_cache)"
    ),
    "PUT /image/internal/images/{image_id}/file": (
        "hosts storing images they saved: a signed URL, no token, no project (test_image_cache)"
    ),
    **{
        f"{method} /image/internal/transfers/{{server_id}}": (
            "a resized server's disk between hosts: a signed URL, no token (test_image_cache)"
        )
        for method in ("PUT", "GET", "DELETE")
    },
    "GET /image/internal/files/{name}": (
        "a store file an image names, for hosts: a signed URL, no token (test_image_cache)"
    ),
    "GET /image/v2/schemas/image": "the image schema: static, the same for all",
    "GET /image/v2/schemas/images": "the image list schema: static, the same for all",
    "GET /metrics": "operations (shared/ops_http.py): no token, no project",
    "GET /healthz": "operations (shared/ops_http.py): no token, no project",
    "GET /readyz": "operations (shared/ops_http.py): no token, no project",
    # the console proxy (api_gateway/consoles): a console token is the credential, and is
    # only made for a server the caller may see (test_consoles)
    "GET /consoles/novnc/websockify": "a console token opens it, no project (test_consoles)",
    "GET /consoles/spice/websockify": "a console token opens it, no project (test_consoles)",
    "GET /consoles/xvpvnc/console": "a console token opens it, no project (test_consoles)",
    "GET /consoles/novnc/{path}": "noVNC's static files, the same for all",
    "GET /consoles/spice/{path}": "spice-html5's static files, the same for all",
}


def route_key(method: str, canonical: str) -> str:
    """A router route as ``METHOD /{tenant_id}/path``: the optional slash and format suffix
    dropped, the versioned (``/v2/{tenant_id}``) and bookmark (``/{tenant_id}``) forms one."""
    path = canonical.replace("{_slash}", "").replace("{_fmt}", "")
    if path.startswith("/v2/{tenant_id}"):
        path = path.removeprefix("/v2")
    return f"{method} {path}"


def _params() -> list[Any]:
    params = []
    for case in CASES:
        for fmt in case.formats:
            for scope in case.scopes:
                params.append(pytest.param(case, fmt, scope, id=f"{case.name} [{fmt}, {scope}]"))
    return params


#: whose ids a request names: the victim's live server and snapshot, the victim's deleted
#: ones, or ids that exist nowhere
WHOSE = ("live", "deleted", "nowhere")


def _values(victim: Victim, whose: str) -> dict[str, str]:
    """The template's values for ``whose`` ids."""
    ids = {
        "live": {
            "server_id": victim.server_id,
            "image_id": victim.image_id,
            "request_id": victim.request_id,
        },
        "deleted": {
            "server_id": victim.deleted_server_id,
            "image_id": victim.deleted_image_id,
            "request_id": victim.deleted_request_id,
        },
        "nowhere": {
            "server_id": str(uuid.uuid4()),
            "image_id": str(uuid.uuid4()),
            "request_id": f"req-{uuid.uuid4()}",
        },
    }[whose]
    return {
        **ids,
        "own_server_id": victim.intruder_server_id,
        "key": KEY,
        "name": ids["server_id"],  # a key pair name (a uuid is a valid one)
        "network": victim.network,
        "host": HOST,
    }


def _fill(template: Any, values: Mapping[str, str]) -> Any:
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, dict):
        return {_fill(k, values): _fill(v, values) for k, v in template.items()}
    return template


def _anonymous(text: str, values: Mapping[str, str]) -> str:
    """``text`` with the ids of ``values`` written as their template names."""
    for name in ("server_id", "image_id", "request_id"):
        text = text.replace(values[name], f"{{{name}}}")
    return text


async def _attempt(
    system: System, victim: Victim, case: Case, fmt: str, scope: str, whose: str
) -> tuple[Answer, dict[str, str]]:
    values = _values(victim, whose)
    tenant = victim.tenant if scope == "victims-url" else victim.intruder.tenant
    answer = await send(
        victim.intruder.session,
        system.url,
        victim.intruder.token,
        tenant,
        case.method,
        _fill(case.path, values),
        _fill(case.body, values),
        fmt=fmt,
        scope=scope,
        project_url=case.project_url,
    )
    return answer, values


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "fmt", "scope"), _params())
async def test_the_intruder_learns_and_changes_nothing(
    system: System, victim: Victim, case: Case, fmt: str, scope: str
) -> None:
    before = await _footprint(system, victim)
    answers = {}
    for whose in WHOSE:  # the victim's first: a leak shows before any id was made up
        answer, values = await _attempt(system, victim, case, fmt, scope, whose)
        assert await _footprint(system, victim) == before, (whose, answer)
        # nothing of the victim's beyond what the intruder wrote itself (a fault may repeat
        # the id it was asked about, as it does for an id that exists nowhere)
        asked = f"{_fill(case.path, values)} {json.dumps(_fill(case.body, values))}"
        if scope == "victims-url":
            asked += victim.tenant
        for what, secret in victim.secrets().items():
            if secret not in asked:
                assert secret not in answer.text, (whose, what, answer.text)
        answers[whose] = Answer(
            answer.status,
            answer.content_type,
            _anonymous(answer.text, values),
            tuple((name, _anonymous(value, values)) for name, value in answer.headers),
        )

    # the victim's ids, live or deleted, and ids that exist nowhere get the very same answer:
    # status, headers and body
    assert answers["live"] == answers["nowhere"]
    assert answers["deleted"] == answers["nowhere"]
    expect = FORBIDDEN if scope == "victims-url" else case.expect
    if expect is None:
        assert answers["live"].status == 200, answers["live"]
    else:
        assert_fault(answers["live"], fmt, *expect)


@dataclass(frozen=True)
class Listing:
    """A list query, and what of the victim's the victim itself sees with it (proof that
    the query would show the intruder a leak)."""

    path: str
    owner_sees: frozenset[str]
    glance: bool = False


SERVER = frozenset({"server"})
SERVERS_EVER = frozenset({"server", "deleted server"})
IMAGE_ONLY = frozenset({"image"})
IMAGES_EVER = frozenset({"image", "deleted image"})

LISTINGS = [
    Listing("/servers", SERVER),
    Listing("/servers/detail", SERVER),
    Listing("/servers?all_tenants=1", SERVER),
    Listing("/servers/detail?all_tenants=1", SERVER),
    Listing(f"/servers/detail?all_tenants=true&changes-since={SINCE}", SERVERS_EVER),
    Listing(f"/servers?changes-since={SINCE}", SERVERS_EVER),
    Listing(f"/servers/detail?changes-since={SINCE}", SERVERS_EVER),
    Listing(f"/servers/detail?status=DELETED&changes-since={SINCE}", frozenset({"deleted server"})),
    Listing("/servers/detail?name=victim", SERVER),
    Listing(f"/servers/detail?image={IMAGE}", SERVER),
    Listing("/servers/detail?flavor=2", SERVER),
    Listing("/servers/detail?status=ACTIVE&limit=1000", SERVER),
    Listing("/images", IMAGE_ONLY),
    Listing("/images/detail", IMAGE_ONLY),
    Listing("/images/detail?all_tenants=1", IMAGE_ONLY),
    Listing(f"/images/detail?changes-since={SINCE}", IMAGES_EVER),
    Listing(f"/images?changes-since={SINCE}&status=DELETED", frozenset({"deleted image"})),
    Listing("/images/detail?type=SERVER", IMAGE_ONLY),
    Listing("/images/detail?type=snapshot", IMAGE_ONLY),
    Listing("/images/detail?server={server_id}", IMAGE_ONLY),
    Listing("/images/detail?name=victim-snap", IMAGE_ONLY),
    Listing("/images/detail?status=ACTIVE&limit=1000", IMAGE_ONLY),
    Listing("/image/v2/images?limit=1000", IMAGE_ONLY, glance=True),
    Listing("/image/v2/images?name=victim-snap", IMAGE_ONLY, glance=True),
    Listing("/image/v2/images?status=active&limit=1000", IMAGE_ONLY, glance=True),
]


def _listing_params() -> list[Any]:
    return [
        pytest.param(listing, fmt, id=f"{listing.path} [{fmt}]")
        for listing in LISTINGS
        for fmt in (("json",) if listing.glance else ("json", "xml"))
    ]


async def _list(victim: Victim, client: ComputeClient, listing: Listing, fmt: str) -> Answer:
    path = listing.path.format(server_id=victim.server_id)
    return await send(
        client.session,
        client.url,
        client.token,
        client.tenant,
        "GET",
        path,
        None,
        fmt=fmt,
        scope="own",
        project_url=not listing.glance,
    )


@pytest.mark.parametrize(("listing", "fmt"), _listing_params())
async def test_lists_never_show_another_projects_resources(
    system: System, victim: Victim, listing: Listing, fmt: str
) -> None:
    before = await _footprint(system, victim)
    seen = await _list(victim, victim.intruder, listing, fmt)
    assert seen.status == 200, seen
    for what, secret in victim.secrets().items():
        assert secret not in seen.text, (what, seen.text)
    # the same query shows the victim its own: it is one that would reveal a leak
    own = await _list(victim, victim.owner, listing, fmt)
    assert own.status == 200, own
    named = {
        "server": victim.server_id,
        "deleted server": victim.deleted_server_id,
        "image": victim.image_id,
        "deleted image": victim.deleted_image_id,
    }
    assert listing.owner_sees <= {what for what, id_ in named.items() if id_ in own.text}
    assert await _footprint(system, victim) == before


async def test_all_tenants_shows_every_project_to_administrators_only(victim: Victim) -> None:
    """The control of the all_tenants listings above: the parameter works, for an
    administrator."""
    admin = ComputeClient(victim.intruder.session, victim.intruder.url, "ops", "admin")
    everyone = await admin.get(f"/servers/detail?all_tenants=1&changes-since={SINCE}")
    ids = {server["id"] for server in everyone.body["servers"]}
    assert {victim.server_id, victim.deleted_server_id, victim.intruder_server_id} <= ids
    intruder = await victim.intruder.get(f"/servers/detail?all_tenants=1&changes-since={SINCE}")
    assert [s["id"] for s in intruder.body["servers"]] == [victim.intruder_server_id]


async def test_limits_count_only_the_callers_own_usage(victim: Victim) -> None:
    """The victim's server is a flavor 2 (2048 MB), the intruder's a flavor 1 (512 MB)."""
    usage = {}
    for client in (victim.intruder, victim.owner):
        reply = await client.get("/limits")
        assert reply.status == 200, reply
        absolute = reply.body["limits"]["absolute"]
        usage[client.tenant] = (
            absolute["totalInstancesUsed"],
            absolute["totalCoresUsed"],
            absolute["totalRAMUsed"],
        )
    assert usage == {victim.intruder.tenant: (1, 1, 512), victim.tenant: (1, 1, 2048)}


async def test_the_intruders_own_audit_trail_has_only_its_own_actions(victim: Victim) -> None:
    reply = await victim.intruder.get(f"/servers/{victim.intruder_server_id}/os-instance-actions")
    assert reply.status == 200
    assert [a["action"] for a in reply.body["instanceActions"]] == ["create"]
    assert {a["project_id"] for a in reply.body["instanceActions"]} == {victim.intruder.tenant}


def test_every_action_is_covered() -> None:
    """An action registered without a body in ACTION_BODIES would go untried."""
    assert set(ACTION_BODIES) == ACTION_TABLE.names()


def test_every_gateway_route_is_covered(tmp_path: Path) -> None:
    """Every route of the gateway's router is tried above, or excluded with a reason; and
    every route named here still exists (no stale entry hides a missing case)."""
    app = create_app(settings_for(tmp_path))
    served = {
        route_key(route.method, resource.canonical)
        for resource in app.router.resources()
        for route in resource
    }
    covered = {case.route for case in CASES} | LISTED
    assert not covered & set(EXCLUDED)
    missing = served - covered - set(EXCLUDED)
    assert not missing, f"routes without a tenant isolation case: {sorted(missing)}"
    stale = (covered | set(EXCLUDED)) - served
    assert not stale, f"cases or exclusions for routes the gateway does not serve: {stale}"
