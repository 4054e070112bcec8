"""tempest's published nova v2.1 response schemas, by call, and the check tempest makes.

Why: tempest, python-novaclient and openstacksdk are written against nova's answers, and
tempest publishes them as JSON schemas (``tempest.lib.api_schema.response.compute``). A
response that fails its schema is one a real client may trip on, so every JSON answer of the
functional suite is checked against the schema of its call (tests/support/client.py calls
:func:`check_reply` after every request). tempest is used as a library of schemas only.

Only nova's v2.1 schemas without a microversion apply: Stratus serves the 2013 v2 API, which
v2.1 kept (the later microversions change the answers). Where Stratus answers differently
on purpose (docs/compatibility.md, docs/guide.md), the table holds a corrected copy of
tempest's schema (:func:`_amended`) with the reason; everything else is tempest's schema as
published.

The check is tempest's ``RestClient.validate_response`` for a success or redirection: the
status must be one the schema lists, the body must match ``response_body`` (or be empty
when there is none), with tempest's validator and format checker (``iso8601-date-time``,
``ipv4``/``ipv6``...). Errors are not checked (tempest checks them elsewhere), and the
caller (tests/support/client.py) passes only answers that carry a JSON body.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
from defusedxml import ElementTree
from tempest.lib.api_schema.response.compute.v2_1 import (  # type: ignore[import-untyped]
    extensions,
    flavors,
    flavors_extra_specs,
    hosts,
    images,
    keypairs,
    limits,
    migrations,
    quotas,
    servers,
    services,
    versions,
)
from tempest.lib.common.jsonschema_validator import (  # type: ignore[import-untyped]
    FORMAT_CHECKER,
    JSONSCHEMA_VALIDATOR,
)

#: A tempest schema: ``{"status_code": [...], "response_body": {...}}``.
Schema = dict[str, Any]

#: The statuses tempest validates (``rest_client.HTTP_SUCCESS + HTTP_REDIRECTION``).
_VALIDATED: Final[frozenset[int]] = frozenset(range(200, 208)) | frozenset(range(300, 308))


class Call(NamedTuple):
    """One call of the API: a method, a path pattern under ``/v2/{tenant}`` (or ``/``,
    ``/v2/`` for the version documents) and, for ``/servers/{id}/action``, the action."""

    method: str
    path: str
    action: str | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}" + (f" {self.action}" if self.action else "")


@dataclass(frozen=True)
class NamedSchema:
    """A schema with the name the failure messages give: tempest's module and attribute,
    and, for a corrected copy, what was changed."""

    name: str
    schema: Schema


def _tempest(module: Any, attribute: str) -> NamedSchema:
    return NamedSchema(
        f"v2_1.{module.__name__.rsplit('.', 1)[-1]}.{attribute}", getattr(module, attribute)
    )


def _amended(
    module: Any, attribute: str, change: str, edit: Callable[[Schema], None]
) -> NamedSchema:
    """A copy of tempest's schema with ``edit`` applied; ``change`` says what, for messages
    (the reason is at the call site)."""
    schema = copy.deepcopy(getattr(module, attribute))
    edit(schema)
    original = _tempest(module, attribute)
    return NamedSchema(f"{original.name}, amended: {change}", schema)


# -- corrected copies --------------------------------------------------------------------


def _keypair_without_id(schema: Schema) -> None:
    # nova's key pair ``id`` was the row number of its database record, which nova 2013.1's
    # show answered whole. Stratus keys a key pair by its user and name (migration 0012) and
    # has no number to show; no client addresses a key pair by it (they use the name), so
    # only ``id`` is not required. The other members of nova's record are shown
    # (api_gateway/views/keypairs.py).
    item = schema["response_body"]["properties"]["keypair"]
    item["required"].remove("id")


#: nova's server fault, as tempest describes it (code, created, message; details optional).
_FAULT: Final[Schema] = servers.common_show_server["properties"]["fault"]


def _images_with_fault(schema: Schema) -> None:
    # An image in ERROR shows its asynchronous fault, as the guide's asynchronous faults
    # (1.9.2) apply to servers and images alike (docs/guide.md), with the server fault's
    # members (api_gateway/views/images.py). nova never recorded image faults, so tempest's
    # image schemas forbid the member, and tempest never sees it (its tests make no image
    # fail); clients ignore it. Everything else is tempest's schema.
    body = schema["response_body"]["properties"]
    image = body["image"] if "image" in body else body["images"]["items"]
    image["properties"]["fault"] = _FAULT


# -- the table ---------------------------------------------------------------------------

_ACTIONS_WITHOUT_BODY = (
    # tempest's servers_client.action() default: 202 and no body
    "changePassword",
    "reboot",
    "resize",
    "revertResize",
    "os-stop",
    "os-start",
    "os-migrateLive",
    "migrate",
    "lock",
    "unlock",
    "suspend",
    "resume",
    "pause",
    "unpause",
    "os-resetState",
    "resetNetwork",
    "injectNetworkInfo",
    "addSecurityGroup",
    "removeSecurityGroup",
    "shelve",
    "unshelve",
    "shelveOffload",
    "unrescue",
    "forceDelete",
    "restore",
    "addFixedIp",
    "removeFixedIp",
)

_SERVER_ACTION = "/servers/{id}/action"

#: Every call of the v2 API that tempest has a v2.1 schema for, as tempest's service
#: clients pair them (tempest/lib/services/compute/*_client.py).
SCHEMAS: Final[dict[Call, NamedSchema]] = {
    # versions
    Call("GET", "/"): _tempest(versions, "list_versions"),
    Call("GET", "/v2/"): _tempest(versions, "get_one_version"),
    # servers
    Call("GET", "/servers"): _tempest(servers, "list_servers"),
    Call("GET", "/servers/detail"): _tempest(servers, "list_servers_detail"),
    # tempest's default (enable_instance_password): Stratus always returns adminPass
    Call("POST", "/servers"): _tempest(servers, "create_server_with_admin_pass"),
    Call("GET", "/servers/{id}"): _tempest(servers, "get_server"),
    Call("PUT", "/servers/{id}"): _tempest(servers, "update_server"),
    Call("DELETE", "/servers/{id}"): _tempest(servers, "delete_server"),
    Call("GET", "/servers/{id}/ips"): _tempest(servers, "list_addresses"),
    Call("GET", "/servers/{id}/ips/{network}"): _tempest(servers, "list_addresses_by_network"),
    Call("GET", "/servers/{id}/metadata"): _tempest(servers, "list_server_metadata"),
    Call("PUT", "/servers/{id}/metadata"): _tempest(servers, "set_server_metadata"),
    Call("POST", "/servers/{id}/metadata"): _tempest(servers, "update_server_metadata"),
    Call("GET", "/servers/{id}/metadata/{key}"): _tempest(servers, "set_show_server_metadata_item"),
    Call("PUT", "/servers/{id}/metadata/{key}"): _tempest(servers, "set_show_server_metadata_item"),
    Call("DELETE", "/servers/{id}/metadata/{key}"): _tempest(
        servers, "delete_server_metadata_item"
    ),
    Call("GET", "/servers/{id}/os-instance-actions"): _tempest(servers, "list_instance_actions"),
    Call("GET", "/servers/{id}/os-instance-actions/{request_id}"): _tempest(
        servers, "show_instance_action"
    ),
    # server actions
    Call("POST", _SERVER_ACTION, "rebuild"): _tempest(servers, "rebuild_server_with_admin_pass"),
    Call("POST", _SERVER_ACTION, "confirmResize"): _tempest(
        servers, "server_actions_confirm_resize"
    ),
    Call("POST", _SERVER_ACTION, "createBackup"): _tempest(servers, "create_backup"),
    Call("POST", _SERVER_ACTION, "createImage"): _tempest(images, "create_image"),
    Call("POST", _SERVER_ACTION, "os-getConsoleOutput"): _tempest(servers, "get_console_output"),
    Call("POST", _SERVER_ACTION, "os-getVNCConsole"): _tempest(servers, "get_vnc_console"),
    # tempest's client has no SPICE call; nova answers both console actions with the same
    # document (``{"console": {"type", "url"}}``), which tempest's VNC schema describes
    Call("POST", _SERVER_ACTION, "os-getSPICEConsole"): _tempest(servers, "get_vnc_console"),
    Call("POST", _SERVER_ACTION, "rescue"): _tempest(servers, "rescue_server_with_admin_pass"),
    **{
        Call("POST", _SERVER_ACTION, name): _tempest(servers, "server_actions_common_schema")
        for name in _ACTIONS_WITHOUT_BODY
    },
    # images
    Call("GET", "/images"): _tempest(images, "list_images"),
    Call("GET", "/images/detail"): _amended(
        images, "list_images_details", "an optional image fault (guide 1.9.2)", _images_with_fault
    ),
    Call("GET", "/images/{id}"): _amended(
        images, "get_image", "an optional image fault (guide 1.9.2)", _images_with_fault
    ),
    Call("DELETE", "/images/{id}"): _tempest(images, "delete"),
    Call("GET", "/images/{id}/metadata"): _tempest(images, "image_metadata"),
    Call("PUT", "/images/{id}/metadata"): _tempest(images, "image_metadata"),
    Call("POST", "/images/{id}/metadata"): _tempest(images, "image_metadata"),
    Call("GET", "/images/{id}/metadata/{key}"): _tempest(images, "image_meta_item"),
    Call("PUT", "/images/{id}/metadata/{key}"): _tempest(images, "image_meta_item"),
    Call("DELETE", "/images/{id}/metadata/{key}"): _tempest(images, "delete"),
    # flavors
    Call("GET", "/flavors"): _tempest(flavors, "list_flavors"),
    Call("GET", "/flavors/detail"): _tempest(flavors, "list_flavors_details"),
    Call("GET", "/flavors/{id}"): _tempest(flavors, "create_update_get_flavor_details"),
    Call("GET", "/flavors/{id}/os-extra_specs"): _tempest(
        flavors_extra_specs, "set_get_flavor_extra_specs"
    ),
    Call("POST", "/flavors/{id}/os-extra_specs"): _tempest(
        flavors_extra_specs, "set_get_flavor_extra_specs"
    ),
    Call("GET", "/flavors/{id}/os-extra_specs/{key}"): _tempest(
        flavors_extra_specs, "set_get_flavor_extra_specs_key"
    ),
    Call("PUT", "/flavors/{id}/os-extra_specs/{key}"): _tempest(
        flavors_extra_specs, "set_get_flavor_extra_specs_key"
    ),
    Call("DELETE", "/flavors/{id}/os-extra_specs/{key}"): _tempest(
        flavors_extra_specs, "unset_flavor_extra_specs"
    ),
    # key pairs
    Call("GET", "/os-keypairs"): _tempest(keypairs, "list_keypairs"),
    Call("POST", "/os-keypairs"): _tempest(keypairs, "create_keypair"),
    Call("GET", "/os-keypairs/{name}"): _amended(
        keypairs, "get_keypair", "id not required (no row number)", _keypair_without_id
    ),
    Call("DELETE", "/os-keypairs/{name}"): _tempest(keypairs, "delete_keypair"),
    # limits, quotas, extensions
    Call("GET", "/limits"): _tempest(limits, "get_limit"),
    Call("GET", "/os-quota-sets/{tenant}"): _tempest(quotas, "get_quota_set"),
    Call("GET", "/os-quota-sets/{tenant}/defaults"): _tempest(quotas, "get_quota_set"),
    Call("PUT", "/os-quota-sets/{tenant}"): _tempest(quotas, "update_quota_set"),
    Call("GET", "/extensions"): _tempest(extensions, "list_extensions"),
    # administration
    Call("GET", "/os-hosts"): _tempest(hosts, "list_hosts"),
    Call("GET", "/os-hosts/{host}"): _tempest(hosts, "get_host_detail"),
    Call("PUT", "/os-hosts/{host}"): _tempest(hosts, "update_host"),
    Call("GET", "/os-migrations"): _tempest(migrations, "list_migrations"),
    Call("GET", "/os-services"): _tempest(services, "list_services"),
    Call("PUT", "/os-services/enable"): _tempest(services, "enable_disable_service"),
    Call("PUT", "/os-services/disable"): _tempest(services, "enable_disable_service"),
    Call("PUT", "/os-services/disable-log-reason"): _tempest(services, "disable_log_reason"),
}

#: Any redirection with a JSON body is nova's Multiple Choices document, whatever the path
#: (a version-less path, guide 1.7): tempest's ``versions.get_version``.
MULTIPLE_CHOICES: Final[NamedSchema] = _tempest(versions, "get_version")

#: Paths of the API under ``/v2/{tenant}`` that are not in :data:`SCHEMAS`; they are named
#: by :func:`call_of` anyway, so a survey of the suite can list the calls without a schema.
PATHS_WITHOUT_SCHEMA: Final[tuple[str, ...]] = ("/extensions/{alias}",)


_VERSION_DOCUMENTS: Final[frozenset[str]] = frozenset({"/", "/v2/"})


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$")


#: The path patterns under ``/v2/{tenant}``, most literal first (``/servers/detail``
#: before ``/servers/{id}``).
_PATTERNS: Final[list[tuple[str, re.Pattern[str]]]] = sorted(
    (
        (path, _pattern(path))
        for path in {c.path for c in SCHEMAS} - _VERSION_DOCUMENTS | set(PATHS_WITHOUT_SCHEMA)
    ),
    key=lambda item: item[0].count("{"),
)

_SUFFIX = re.compile(r"\.(json|xml|atom)$")


def _pattern_of(path: str) -> str | None:
    """The table's pattern for a path under ``/v2/{tenant}``."""
    for pattern, regex in _PATTERNS:
        if regex.match(path):
            return pattern
    return None


def _action_of(body: Any, data: bytes | None) -> str | None:
    """The action a ``POST /servers/{id}/action`` names: the JSON body's single key, or the
    root element of an XML body."""
    if data is not None:
        try:
            body = json.loads(data)
        except ValueError:
            try:
                root = ElementTree.fromstring(data)
            except Exception:  # not XML either: the request names no action
                return None
            return str(root.tag).rsplit("}", 1)[-1]
    if isinstance(body, dict) and len(body) == 1:
        return str(next(iter(body)))
    return None


def call_of(method: str, url: str, body: Any = None, data: bytes | None = None) -> Call | None:
    """The call a request makes, in the table's terms; ``None`` for a path outside the
    compute API (the image service, ``/metrics``...) or that no pattern knows.

    ``url`` is the full URL: ``/`` and ``/v2/`` are the version documents,
    ``/v2/{tenant}<path>`` the API, and ``/{tenant}<path>`` its version-less bookmark form.
    The query, a ``.json``/``.xml`` suffix and a trailing slash are ignored, as the router
    ignores them.
    """
    path = _SUFFIX.sub("", urlsplit(url).path).rstrip("/")
    if path == "":
        return Call(method, "/")
    if path == "/v2":
        return Call(method, "/v2/")
    segments = path.split("/")  # ["", "v2", tenant, ...] or ["", tenant, ...]
    rest = "/" + "/".join(segments[3:] if segments[1] == "v2" else segments[2:])
    pattern = _pattern_of(rest)
    if pattern is None:
        return None
    action = _action_of(body, data) if pattern == _SERVER_ACTION else None
    return Call(method, pattern, action)


def schema_for(call: Call, status: int, body: Any) -> NamedSchema | None:
    """The schema tempest would validate this answer with, ``None`` when it would not."""
    if 300 <= status < 400:
        return MULTIPLE_CHOICES
    if call == Call("POST", "/servers") and isinstance(body, dict) and "reservation_id" in body:
        return None  # multiple create's answer: tempest's create_server returns it unchecked
    return SCHEMAS.get(call)


def validate(
    call: Call, named: NamedSchema, status: int, body: Any, headers: Mapping[str, str]
) -> None:
    """tempest's ``RestClient.validate_response``: raise AssertionError naming the call,
    the schema and jsonschema's message when the answer does not match."""
    schema = named.schema
    where = f"{call}: {status} answer fails tempest's {named.name}"
    if status not in schema["status_code"]:
        raise AssertionError(f"{where}: status {status} not in {schema['status_code']}")
    body_schema = schema.get("response_body")
    if body_schema:
        _match(where, body, body_schema, "body")
    elif body:
        raise AssertionError(f"{where}: the schema has no body, the answer has {body!r}")
    header_schema = schema.get("response_header")
    if header_schema:
        _match(where, {k.lower(): v for k, v in headers.items()}, header_schema, "headers")


#: One validator per schema (by identity): the suite checks thousands of answers.
_VALIDATORS: dict[int, Any] = {}


def _match(where: str, instance: Any, schema: Schema, what: str) -> None:
    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = JSONSCHEMA_VALIDATOR(schema, format_checker=FORMAT_CHECKER)
        _VALIDATORS[id(schema)] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        at = error.json_path if error.path else "$"
        raise AssertionError(
            f"{where}: {what} at {at}: {error.message} "
            f"(schema {'/'.join(str(p) for p in error.schema_path)}; {what}: {instance!r})"
        )


#: The request headers that ask nova for a microversion (nova's own, and the generic one).
_MICROVERSION_HEADERS: Final[tuple[str, ...]] = (
    "x-openstack-nova-api-version",
    "openstack-api-version",
)


def asks_microversion(request_headers: Mapping[str, str]) -> bool:
    """Whether a request asks for a microversion beyond 2.1: the v2.1 schemas do not
    describe what nova answers then, so such a request is not checked against them."""
    for name, value in request_headers.items():
        if name.lower() in _MICROVERSION_HEADERS:
            version = value.split()[-1] if value.split() else ""
            if version not in ("2.0", "2.1"):
                return True
    return False


def check_reply(
    call: Call | None, status: int, body: Any, headers: Mapping[str, str]
) -> NamedSchema | None:
    """Check one JSON answer of ``call`` as tempest would; return the schema used (``None``
    when none applies: an unknown call, an error status, or no schema for the call).

    The caller passes only answers that carried a JSON body."""
    if call is None or status not in _VALIDATED:
        return None
    named = schema_for(call, status, body)
    if named is not None:
        validate(call, named, status, body, headers)
    return named
