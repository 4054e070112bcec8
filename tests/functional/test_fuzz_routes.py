"""Every route of the gateway, fuzzed: whatever the path, method, format, headers, query string
and body, the answer is never a 5xx, every 4xx is a v2 fault in the negotiated format, and
every response carries ``x-openstack-request-id``.

The routes are read from the running application's router at test time, so a route added
tomorrow is fuzzed tomorrow without touching this file (and a test below says so when a new
path variable needs live values of its own). Each example is one request: a route, its path
variables as live ids of a victim project (a server, an image, a flavor, a metadata key, a
network...) or hostile strings (odd Unicode, very long, ``..%2F..``, ``%00``, uuids of
nothing), a method (mostly the route's own), a format suffix, an ``Accept`` header, v2 query
parameters with valid values and usually one hostile one, and for writes a body (plausible
dicts, XML fragments, garbage) with some ``Content-Type``. Mostly a member's token, sometimes
an administrator's, so that the administrators' routes are reached too. The one 5xx allowed
is os-hosts' documented 501 for ``maintenance_mode``, which no Stratus host can enter.

Request *bodies* of the body-taking routes are fuzzed in depth by test_fuzz_bodies.py; here
bodies are only one dimension among many.

Examples: ``STRATUS_FUZZ_EXAMPLES`` (default 300, the regular run). The nightly run is
``STRATUS_FUZZ_EXAMPLES=10000`` (``make fuzz``, which also deepens test_fuzz_bodies.py).

Requests stay under aiohttp's request-line limit (8190 bytes): a longer line is refused by
the HTTP parser before the application exists for that request, so no middleware (and no
fault body) could be involved.

The fuzzer may change the victims' states (lock them, reset them to ERROR, snapshot them,
disable the compute host, set flavor extra specs): the invariant holds in every state. What
would make later examples meaningless, or harm later tests of the session, is kept away:
deletes of a server or an image go to decoys, the public images are never written, and the
fixture's teardown puts hosts and extra specs back and deletes every server the run created.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import string
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yarl import URL

from api_gateway.compute.actions.table import ACTION_TABLE
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient

#: How many requests the fuzzer sends (300 here; the nightly run sets 10000).
EXAMPLES = int(os.environ.get("STRATUS_FUZZ_EXAMPLES", "300"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

COMPUTE_NS = "http://docs.openstack.org/compute/api/v1.1"
JSON = "application/json"
XML = "application/xml"

#: The guide's fault elements (guide 1.9) and the status each one is answered with.
FAULTS = {
    "badRequest": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "resizeNotAllowed": 403,
    "itemNotFound": 404,
    "badMethod": 405,
    "conflictingRequest": 409,
    "buildInProgress": 409,
    "backupOrResizeInProgress": 409,
    "overLimit": 413,
    "badMediaType": 415,
}

#: Keep the request line under aiohttp's 8190-byte limit (see the module docstring).
MAX_TARGET = 7800

#: the project whose quotas os-quota-sets' routes are fuzzed with
QUOTA_PROJECT = "fuzz-quotas"
PROJECT = "fuzz-paths"
STRANGER = "fuzz-stranger"
ADMIN_HOME = "fuzz-admin-home"

# --- the routes, from the application itself -------------------------------------------------

_VARIABLE = re.compile(r"\{(\w+)\}")
#: Path variables the router itself fills: the format suffix, the optional slash and the
#: catch-all's path.
_STRUCTURAL = frozenset({"_fmt", "_slash", "path"})
#: Other methods a request may come with. (A method the HTTP parser does not know, ``FUZZ``, is
#: answered 400 by the parser itself, before there is a request for the application.)
_ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE", "PROPFIND")


@dataclass(frozen=True)
class RouteTemplate:
    """One path of the router (``/v2/{tenant_id}/servers/{server_id}{_fmt}``) and the methods
    registered on it (``*`` for the catch-all)."""

    template: str
    methods: tuple[str, ...]

    @property
    def variables(self) -> list[str]:
        return _VARIABLE.findall(self.template)

    @property
    def target(self) -> str | None:
        """The variable naming what the path is about (the last one): what a DELETE removes."""
        named = [v for v in self.variables if v not in _STRUCTURAL]
        return named[-1] if named else None


def gateway_routes(app: web.Application) -> list[RouteTemplate]:
    """Every path the application routes, with its methods, as the router has them now."""
    methods: dict[str, set[str]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path")
        assert isinstance(template, str), info
        methods.setdefault(template, set()).add(route.method)
    return [RouteTemplate(t, tuple(sorted(m))) for t, m in sorted(methods.items())]


#: Which kind of route an example takes, weighted: a bookmark without a version in its media
#: types is a 300 whatever else the request says, so those get fewer examples.
ROUTE_KINDS = ["versioned"] * 6 + ["bookmark"] * 2 + ["other"] * 2

# --- the victims ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Victims:
    """Live things of the fuzzed project, and the clients to reach the gateway."""

    http: aiohttp.ClientSession
    url: str
    routes: list[RouteTemplate] = field(repr=False)
    server: str
    decoy_servers: list[str]
    snapshot: str
    decoy_image: str
    flavors: list[str]
    metadata_keys: list[str]
    networks: list[str]
    request_ids: list[str]
    hosts: list[str]
    aliases: list[str]
    #: the fuzzer's key pairs: one to read, one to delete (os-keypairs)
    keypair: str = "victim-key"
    decoy_keypair: str = "decoy-key"

    def routes_of(self, kind: str) -> list[RouteTemplate]:
        """The routes of one kind (``ROUTE_KINDS``): under ``/v2/{tenant_id}``, their
        version-less bookmarks under ``/{tenant_id}``, or the rest (versions, the image
        service, the catch-all...)."""
        versioned = [r for r in self.routes if r.template.startswith("/v2/{tenant_id}")]
        bookmarks = [r for r in self.routes if r.template.startswith("/{tenant_id}")]
        if kind == "versioned":
            return versioned
        if kind == "bookmark":
            return bookmarks
        return [r for r in self.routes if r not in versioned and r not in bookmarks]

    def valid(self, name: str, method: str, route: RouteTemplate) -> list[str]:
        """Live values for the path variable ``name`` (not yet URL-encoded); none for a
        variable this fuzzer knows no live value of.

        A DELETE of a server or an image gets a decoy, so the victims live on; writes never
        name a public image (an administrator could change or delete what every other test
        of the session boots from)."""
        deletes_it = method == "DELETE" and route.target == name
        reads = method in ("GET", "HEAD")
        values: dict[str, list[str]] = {
            "tenant_id": [PROJECT],
            "server_id": self.decoy_servers if deletes_it else [self.server],
            "image_id": (
                [self.decoy_image]
                if deletes_it
                else [self.snapshot, IMAGE]
                if reads
                else [self.snapshot]
            ),
            "flavor_id": self.flavors,
            "key": self.metadata_keys,
            "network": self.networks,
            "request_id": self.request_ids,
            "host": self.hosts,
            "alias": self.aliases,
            "name": [self.decoy_keypair] if deletes_it else [self.keypair],
            # os-quota-sets: a project of its own, so that what a fuzzed PUT sets there never
            # limits the fuzzer's servers
            "project": [QUOTA_PROJECT],
        }
        return values.get(name, [])


async def _wait(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail the fixture (not hang the session) after a while."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout_s} s")
        await asyncio.sleep(0.05)


async def _snapshot_of(api: ComputeClient, server_id: str, name: str) -> str:
    """An ACTIVE snapshot of the server, once the server is free for the next action."""
    reply = await api.post(f"/servers/{server_id}/action", {"createImage": {"name": name}})
    assert reply.status == 202, reply
    image_id: str = reply.headers["Location"].rsplit("/", 1)[-1]

    async def active() -> bool:
        image = (await api.get(f"/images/{image_id}")).body["image"]
        server = (await api.get(f"/servers/{server_id}")).body["server"]
        task = server.get("OS-EXT-STS:task_state")
        return bool(image["status"] == "ACTIVE" and task is None)

    await _wait(active, f"snapshot {name}")
    return image_id


@pytest.fixture(scope="module")
async def victims(system: System, http: aiohttp.ClientSession) -> AsyncIterator[Victims]:
    """A project with a live server (metadata, a network, a recorded action), snapshots of
    it, decoys to delete, and what the cloud offers (flavors, hosts, extensions); afterwards,
    what the fuzzer may have changed for the rest of the session is put back."""
    assert system.pool is not None and system.runner is not None
    started = await system.pool.fetchval("SELECT now()")
    api = ComputeClient(http, system.url, PROJECT, "fuzzer")
    admin = ComputeClient(http, system.url, PROJECT, "admin")
    created = await api.create_server("victim", IMAGE, metadata={"role": "victim", "a.b": "c"})
    server_id = created.body["server"]["id"]
    decoys = [(await api.create_server(f"decoy{i}", IMAGE)).body["server"]["id"] for i in (1, 2)]
    await api.wait_for_status(server_id, "ACTIVE")
    snapshot = await _snapshot_of(api, server_id, "victim-image")
    decoy_image = await _snapshot_of(api, server_id, "decoy-image")
    await api.request("PUT", f"/images/{snapshot}/metadata", {"metadata": {"kind": "victim"}})
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    flavors = [f["id"] for f in (await api.get("/flavors")).body["flavors"]]
    specs = {f: (await admin.get(f"/flavors/{f}/os-extra_specs")).body for f in flavors}
    extensions = (await api.get("/extensions")).body["extensions"]
    for keypair in ("victim-key", "decoy-key"):
        assert (await api.post("/os-keypairs", {"keypair": {"name": keypair}})).status == 200
    yield Victims(
        http=http,
        url=system.url,
        routes=gateway_routes(system.runner.app),
        server=server_id,
        decoy_servers=decoys,
        snapshot=snapshot,
        decoy_image=decoy_image,
        flavors=flavors,
        metadata_keys=["role", "a.b", "kind"],
        networks=list(server["addresses"]) or ["private"],
        request_ids=[created.headers["X-Compute-Request-Id"]],
        hosts=list(system.drivers),
        aliases=[e["alias"] for e in extensions],
    )
    await _put_back(system, admin, specs, started)


async def _put_back(
    system: System, admin: ComputeClient, specs: dict[str, Any], started: datetime
) -> None:
    """Undo what the fuzzer's requests may have done to the rest of the session: hosts
    disabled, flavor extra specs changed, servers created (in any project, by members or by
    an administrator acting in a hostile project's URL)."""
    assert system.pool is not None
    for host in system.drivers:
        reply = await admin.request("PUT", f"/os-hosts/{host}", {"status": "enable"})
        assert reply.status == 200, reply
    for flavor, before in specs.items():
        now = (await admin.get(f"/flavors/{flavor}/os-extra_specs")).body["extra_specs"]
        for key in set(now) - set(before["extra_specs"]):
            await admin.delete(f"/flavors/{flavor}/os-extra_specs/{quote(key, safe='')}")
        if before["extra_specs"]:
            await admin.post(f"/flavors/{flavor}/os-extra_specs", before)
    rows = await system.pool.fetch(
        "SELECT id, tenant_id FROM servers WHERE deleted_at IS NULL AND created_at >= $1", started
    )
    for row in rows:
        base = f"{admin.url}/v2/{quote(row['tenant_id'], safe='')}/servers/{row['id']}"
        await admin.request("POST", f"{base}/action", {"os-resetState": {"state": "active"}})
        await admin.request("DELETE", base)
    ids = [row["id"] for row in rows]

    async def all_gone() -> bool:
        assert system.pool is not None
        left = await system.pool.fetchval(
            "SELECT count(*) FROM servers WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL", ids
        )
        return bool(left == 0)

    await _wait(all_gone, f"the deletion of the {len(ids)} servers the fuzzer created", 60.0)


# --- what a request is made of ----------------------------------------------------------------


@dataclass(frozen=True)
class FuzzRequest:
    """One drawn request; its repr is what a failing check prints."""

    route: str
    method: str
    target: str  # path and query, URL-encoded, as sent
    headers: dict[str, str]
    body: bytes | None
    expected_format: str  # the fault format the suffix and Accept negotiate

    def __repr__(self) -> str:
        body = "" if self.body is None else f" body={self.body[:300]!r}"
        return f"{self.method} {self.target} headers={self.headers}{body} (route {self.route})"


#: characters that are odd in a URL, a database or a terminal (no surrogates: they cannot be
#: sent; a NUL goes as ``%00`` among the raw junk)
odd_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=40
)
odd_chars = st.sampled_from(
    ["\u202e", "\ufeff", "\u0301", "\ufffd", "\uffff", "\U0001f600", "\u2028", "\x7f", " ", "\t"]
)


def _long(unit: st.SearchStrategy[str], min_size: int, max_size: int) -> st.SearchStrategy[str]:
    """A long string from a short random unit repeated: drawing thousands of characters one by
    one would spend Hypothesis's budget for a whole example on one string."""
    return st.builds(lambda text, size: (text * size)[:size], unit, st.integers(min_size, max_size))


long_text = _long(st.text(string.ascii_letters + string.digits + "-._~", min_size=1), 300, 2000)
#: Already-encoded junk, sent verbatim.
raw_junk = st.sampled_from(
    [
        "..%2F..",
        "%2e%2e%2f%2e%2e",
        "%00",
        "a%00b",
        "..",
        ".",
        "%",
        "%zz",
        "%ff%fe",
        "%c0%ae%c0%ae",
        "%2F",
        "%3F",
        "%23",
        "%20",
        ";",
        "~",
        "+",
        ".json",
        ".xml",
        "%ed%a0%80",  # an encoded lone surrogate
    ]
)
plain_hostile = st.sampled_from(
    ["0", "-1", "1.5", "99999999999999999999", "null", "detail", "true", "' OR 1=1 --", "*"]
)


def _encoded(text: str) -> str:
    return quote(text, safe="")


def hostile_segments() -> st.SearchStrategy[str]:
    """An encoded path segment or query value nobody meant to be valid."""
    return st.one_of(
        odd_text.map(_encoded),
        st.lists(odd_chars, min_size=1, max_size=5).map("".join).map(_encoded),
        long_text,
        raw_junk,
        plain_hostile.map(_encoded),
        st.uuids().map(str),
        st.just(""),
    )


@st.composite
def path_value(draw: st.DrawFn, valid: list[str], valid_in_10: int = 7) -> str:
    """A live value when there is one (``valid_in_10`` times in ten), else hostile; encoded."""
    if valid and draw(st.integers(0, 9)) < valid_in_10:
        return _encoded(draw(st.sampled_from(valid)))
    return draw(hostile_segments())


#: Accept headers and the fault format each negotiates (guide 1.2; faults are never Atom).
ACCEPTS: list[tuple[str | None, str]] = [
    (None, JSON),
    ("application/json", JSON),
    ("application/xml", XML),
    ("application/atom+xml", JSON),
    ("application/vnd.openstack.compute+json;version=2", JSON),
    ("application/vnd.openstack.compute+xml;version=2", XML),
    ("application/vnd.openstack.compute.v2+json", JSON),
    ("application/vnd.openstack.compute.v2+xml", XML),
    ("application/vnd.openstack.compute+xml;version=3", XML),
    ("*/*", JSON),
    ("application/*", JSON),
    ("application/xml;q=0.5, application/json;q=0.9", JSON),
    ("application/json;q=0.2, application/xml", XML),
    ("text/html;q=1, application/xml;q=0.1", XML),
    ("application/xml, application/json", XML),
    ("application/xml;q=0", JSON),
    ("application/xml;q=abc", JSON),
    ("application/xml;q=nan", JSON),
    ("application/xml;q=inf, application/json", JSON),
    ("text/html", JSON),
    ("application/atom+xml, application/xml;q=0.8", XML),
]
_HEADER_TEXT = string.ascii_letters + string.digits + string.punctuation + " "
garbage_accept = (
    st.text(_HEADER_TEXT, max_size=60)
    .filter(lambda t: "xml" not in t.lower() and "json" not in t.lower())
    .map(lambda t: (t, JSON))
)

CONTENT_TYPES = [
    JSON,
    XML,
    "application/json; charset=utf-8",
    "application/vnd.openstack.compute+json;version=2",
    "application/vnd.openstack.compute.v2+xml",
    "application/atom+xml",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz",
    "application/octet-stream",
]

#: Query parameters of the v2 lists and filters (guide 1.4, 1.5; the extensions' own).
QUERY_NAMES = [
    "limit",
    "marker",
    "changes-since",
    "image",
    "flavor",
    "name",
    "status",
    "host",
    "all_tenants",
    "type",
    "minDisk",
    "minRam",
    "server",
    "zone",
    "instance_uuid",
    "migration_type",
    "reservation_id",
]
#: Hostile values by the kind of parameter they are aimed at, and for any parameter.
HOSTILE_INTEGERS = ["-1", "2147483648", "-2147483649", "99999999999999999999", "1e3", "0x10"]
HOSTILE_INTEGERS += [" 1", "٣", "NaN", "1_000", "+0", ""]
HOSTILE_REFERENCES = ["http://[", "http://[::1", "http://[::1/images/x", "//", "/", "http:///"]
HOSTILE_REFERENCES += ["http://example.com/images/..", "?/#", "http://h/%zz"]
HOSTILE_DATES = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2011-13-45"]
HOSTILE_DATES += ["infinity", "2011-01-24T17:08Z+01:00", "2011-01-24 17:08 +0100", "-0001-01-01"]
HOSTILE_REGEXES = ["(", "[[:foo:]]", "a{1000}{1000}{1000}", "((((((((((a*)*)*)*)*)*)*)*)*)*)*$"]
HOSTILE_REGEXES += ["(a|a?)+$", "\\", "\\1", "(?<=a)b", "[z-a]", "***", "(?P<n>a)"]
hostile_query_values = st.sampled_from(
    HOSTILE_INTEGERS + HOSTILE_REFERENCES + HOSTILE_DATES + HOSTILE_REGEXES
)
_HOSTILE_BY_NAME = {
    "limit": HOSTILE_INTEGERS,
    "minDisk": HOSTILE_INTEGERS,
    "minRam": HOSTILE_INTEGERS,
    "image": HOSTILE_REFERENCES,
    "flavor": HOSTILE_REFERENCES,
    "server": HOSTILE_REFERENCES,
    "marker": HOSTILE_REFERENCES,
    "instance_uuid": HOSTILE_REFERENCES,
    "changes-since": HOSTILE_DATES,
    "name": HOSTILE_REGEXES,
}


def query_values(v: Victims, name: str) -> list[str]:
    """Values of the kind the parameter ``name`` takes (not yet encoded)."""
    refs = {
        "image": [IMAGE, v.snapshot, f"http://localhost/v2/{PROJECT}/images/{IMAGE}"],
        "flavor": [*v.flavors, f"http://localhost/{PROJECT}/flavors/1"],
        "server": [v.server, f"http://localhost/v2/{PROJECT}/servers/{v.server}"],
    }
    kinds = {
        "limit": ["0", "1", "10", "1000"],
        "marker": [v.server, v.snapshot, IMAGE, *v.flavors],
        "changes-since": ["2011-01-24T17:08Z", "2011-01-24T17:08:00+01:00", "2011-01-24"],
        "name": ["victim", "^v", "fuzz.*"],
        "status": ["ACTIVE", "ERROR", "BUILD", "active", "queued", "SAVING", "UNKNOWN"],
        "host": v.hosts,
        "all_tenants": ["1", "0", "true", "False"],
        "type": ["BASE", "SERVER", "ALL", "snapshot", "backup"],
        "minDisk": ["0", "10"],
        "minRam": ["0", "512"],
        "zone": ["nova"],
        "instance_uuid": [v.server],
        "migration_type": ["resize", "migration", "live-migration"],
        **refs,
    }
    return kinds.get(name, ["1"])


@st.composite
def query_string(draw: st.DrawFn, v: Victims) -> str:
    """Zero to a few ``name=value`` pairs of the v2 names with values of their kind, of which
    usually one is hostile (one at a time, so that it is not refused for another parameter
    before its own code is reached); sometimes an unknown name, or a name without a value."""
    names = draw(st.lists(st.sampled_from(QUERY_NAMES), max_size=3))
    pairs = [[name, _encoded(draw(st.sampled_from(query_values(v, name))))] for name in names]
    if pairs and draw(st.integers(0, 9)) < 7:
        pair = pairs[draw(st.integers(0, len(pairs) - 1))]
        branch = draw(st.integers(0, 3))
        if branch < 3 and pair[0] in _HOSTILE_BY_NAME:
            pair[1] = _encoded(draw(st.sampled_from(_HOSTILE_BY_NAME[pair[0]])))
        elif branch < 3 or draw(st.booleans()):
            pair[1] = _encoded(draw(hostile_query_values))
        else:
            pair[1] = draw(hostile_segments())
    if draw(st.integers(0, 9)) == 0:
        unknown = draw(st.one_of(odd_text.map(_encoded), raw_junk))
        pairs.append([unknown, draw(hostile_segments())])
    if pairs and draw(st.integers(0, 19)) == 0:
        pairs[-1] = pairs[-1][:1]  # a name without "="
    return "&".join("=".join(pair) for pair in pairs)


# --- bodies -----------------------------------------------------------------------------------

MEMBERS = [
    "name",
    "imageRef",
    "flavorRef",
    "adminPass",
    "type",
    "metadata",
    "personality",
    "accessIPv4",
    "accessIPv6",
    "state",
    "backup_type",
    "rotation",
    "host",
    "block_migration",
    "disk_over_commit",
    "status",
    "maintenance_mode",
    "min_count",
    "key_name",
]


def member_values(v: Victims) -> st.SearchStrategy[Any]:
    plausible = st.sampled_from(
        [
            IMAGE,
            v.snapshot,
            "1",
            "2",
            "fuzz",
            "HARD",
            "SOFT",
            "enable",
            "disable",
            "error",
            "active",
            "daily",
            v.hosts[0],
            "true",
            "false",
            "10.0.0.1",
            "::1",
            "aGVsbG8=",
            "/etc/motd",
        ]
    )
    scalars = st.one_of(
        plausible,
        st.integers(-(2**40), 2**40),
        st.booleans(),
        st.none(),
        odd_text,
        _long(odd_text, 256, 400),
        st.floats(allow_nan=False, allow_infinity=False),
    )
    return st.one_of(
        scalars,
        st.lists(scalars, max_size=3),
        st.dictionaries(st.one_of(plausible, odd_text), scalars, max_size=3),
        st.lists(
            st.fixed_dictionaries({"path": st.one_of(plausible, odd_text), "contents": scalars}),
            max_size=2,
        ),
    )


def _tops() -> list[str]:
    """Top-level keys (XML roots) of the v2 bodies; the actions from the live registry."""
    return ["server", "metadata", "meta", "extra_specs", "status", *sorted(ACTION_TABLE.names())]


def plausible_value(v: Victims, member: str) -> st.SearchStrategy[Any]:
    """A value of the type and kind ``member`` takes in some v2 body, mostly valid."""
    text = st.sampled_from(["fuzzed", "x"]) | odd_text
    kinds: dict[str, st.SearchStrategy[Any]] = {
        "name": text,
        "backup_type": text,
        "adminPass": text,
        "imageRef": st.sampled_from([IMAGE, v.snapshot, f"http://h/{PROJECT}/images/{IMAGE}"]),
        "flavorRef": st.sampled_from([*v.flavors, "999", f"http://h/{PROJECT}/flavors/1"]),
        "type": st.sampled_from(["HARD", "SOFT", "hard", "BOOT"]),
        "state": st.sampled_from(["active", "error", "ACTIVE", "deleted"]),
        "rotation": st.integers(-1, 3) | st.sampled_from(["2", "x", "99999999999"]),
        "host": st.sampled_from([*v.hosts, "nowhere"]),
        "block_migration": st.booleans() | st.sampled_from(["true", "False", "x"]),
        "disk_over_commit": st.booleans() | st.sampled_from(["true", "False", "x"]),
        "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
        "personality": st.lists(
            st.fixed_dictionaries(
                {"path": st.sampled_from(["/etc/x", ""]), "contents": st.just("aGk=")}
            ),
            max_size=2,
        ),
        "accessIPv4": st.sampled_from(["10.0.0.1", "", "::1"]),
        "accessIPv6": st.sampled_from(["::1", "", "10.0.0.1"]),
        "status": st.sampled_from(["enable", "disable", "on"]),
        "maintenance_mode": st.sampled_from(["enable", "disable"]),
    }
    return kinds.get(member, member_values(v))


def plausible_members(v: Victims) -> st.SearchStrategy[dict[str, Any]]:
    """A few of the v2 members, each with a value of its kind."""
    return st.lists(st.sampled_from(MEMBERS), unique=True, max_size=4).flatmap(
        lambda names: st.fixed_dictionaries({n: plausible_value(v, n) for n in names})
    )


@st.composite
def json_body(draw: st.DrawFn, v: Victims) -> Any:
    """A plausible body: a known top-level key (an action, ``server``, ``metadata``...) over
    members of their kind or random ones, sometimes a valid server, sometimes a flat object
    (os-hosts, one extra spec), sometimes anything."""
    members = st.dictionaries(
        st.one_of(st.sampled_from(MEMBERS), odd_text), member_values(v), max_size=5
    )
    items = st.dictionaries(
        st.sampled_from(v.metadata_keys) | st.text(max_size=8), st.text(max_size=8), max_size=3
    )
    kind = draw(st.integers(0, 9))
    if kind == 0:
        extra = draw(st.dictionaries(st.sampled_from(MEMBERS), member_values(v), max_size=1))
        return {"server": {"name": "fuzzed", "imageRef": IMAGE, "flavorRef": "1", **extra}}
    if kind == 1:
        return draw(st.one_of(members, plausible_members(v), items))
    if kind == 2:
        return draw(member_values(v))
    top = draw(st.sampled_from(_tops()) if kind < 8 else odd_text)
    if top in ("metadata", "meta", "extra_specs") and kind < 6:
        return {top: draw(items)}
    value = draw(
        st.one_of(plausible_members(v), st.none())
        if kind < 6
        else st.one_of(st.none(), members, member_values(v))
    )
    return {top: value}


def _xml_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "", text) or "x"


@st.composite
def xml_body(draw: st.DrawFn, v: Victims) -> bytes:
    """An XML document in the v2 namespace: a known root, members as attributes and child
    elements, maybe metadata and personality; sometimes cut short."""
    root = draw(st.one_of(st.sampled_from(_tops()), odd_text.map(_xml_name)))
    attrs = draw(st.dictionaries(st.sampled_from(MEMBERS), st.text(max_size=20), max_size=4))
    children = "".join(
        f"<{name}>{text}</{name}>"
        for name, text in draw(
            st.dictionaries(
                st.sampled_from(MEMBERS), st.sampled_from(["true", "1", "x", "", "&lt;"])
            )
        ).items()
    )
    if draw(st.booleans()):
        children += '<metadata><meta key="k">v</meta><meta>no key</meta></metadata>'
    if draw(st.booleans()):
        children += '<personality><file path="/etc/x">aGk=</file></personality>'
    attributes = "".join(
        f" {name}={quoteattr(value.replace(chr(0), ''))}" for name, value in attrs.items()
    )
    document = f'<{root} xmlns="{COMPUTE_NS}"{attributes}>{children}</{root}>'
    if draw(st.integers(0, 4)) == 0:
        document = document[: draw(st.integers(0, len(document)))]
    return document.encode()


@st.composite
def body_and_type(draw: st.DrawFn, v: Victims) -> tuple[bytes | None, str | None]:
    """A body and its Content-Type, mostly agreeing, sometimes not; None: not sent."""
    kind = draw(st.sampled_from(["json", "json", "json", "xml", "xml", "garbage", "none", "big"]))
    if kind == "json":
        body: bytes | None = json.dumps(draw(json_body(v))).encode()
        agreeing = JSON
    elif kind == "xml":
        body, agreeing = draw(xml_body(v)), XML
    elif kind == "garbage":
        body = draw(
            st.one_of(
                st.binary(max_size=300),
                st.just(b"[" * 100_000),
                st.just(b'{"a":' * 40 + b"1" + b"}" * 40),
            )
        )
        agreeing = JSON
    elif kind == "big":  # over the gateway's request body limit
        body, agreeing = b'{"server": {"name": "' + b"x" * 120_000 + b'"}}', JSON
    else:
        body, agreeing = None, JSON
    content_type = draw(
        st.one_of(
            st.just(agreeing),
            st.just(agreeing),
            st.sampled_from(CONTENT_TYPES),
            st.none(),
            st.text(_HEADER_TEXT, max_size=40),
        )
    )
    return body, content_type


# --- the request ------------------------------------------------------------------------------

SUFFIXES = ["", "", "", ".json", ".xml", ".atom", ".junk"]


def _expected_format(path: str, accept_format: str) -> str:
    """The format a fault must take: a ``.json``/``.xml`` suffix on a compute API path
    decides (the reference implementation looked at the path's extension before anything
    else), else the Accept header. The image service under ``/image/`` has no suffixes."""
    if not path.startswith("/image/"):
        if path.endswith(".json"):
            return JSON
        if path.endswith(".xml"):
            return XML
    return accept_format


def _weighted(routes: list[RouteTemplate]) -> list[RouteTemplate]:
    """Routes that take a body or read a query string (the collections' GETs: filters,
    paging) three times over: those multiply what a request can be (the server actions alone
    are two dozen requests behind one route)."""

    def weight(route: RouteTemplate) -> int:
        body = {"POST", "PUT"} & set(route.methods)
        listing = "GET" in route.methods and "{_slash}" in route.template
        return 3 if body or listing else 1

    return [r for r in routes for _ in range(weight(r))]


@st.composite
def requests(draw: st.DrawFn, v: Victims) -> FuzzRequest:
    """One request to one of the application's routes, every part of it drawn."""
    route = draw(st.sampled_from(_weighted(v.routes_of(draw(st.sampled_from(ROUTE_KINDS))))))
    own = [m for m in route.methods if m != "*"] or list(_ALL_METHODS)
    method = (
        draw(st.sampled_from(own))
        if draw(st.integers(0, 9)) < 8
        else draw(st.sampled_from(_ALL_METHODS))
    )
    path = route.template
    for name in route.variables:
        if name == "_fmt":
            value = ""
        elif name == "_slash":
            value = draw(st.sampled_from(["", "/"]))
        elif name == "path":  # the catch-all: an unknown path, under a project or anywhere
            segments = draw(st.lists(path_value([]), max_size=4))
            prefix = draw(st.sampled_from(["", f"v2/{PROJECT}/", f"{PROJECT}/", "v2/", "image/"]))
            value = prefix + "/".join(segments)
        else:
            # a project that is not the token's is a 403 before anything else is looked at
            odds = 9 if name == "tenant_id" else 7
            value = draw(path_value(v.valid(name, method, route), odds))
        path = path.replace(f"{{{name}}}", value, 1)
    path += draw(st.sampled_from(SUFFIXES))
    query = draw(query_string(v))
    target = path + (f"?{query}" if query else "")
    assume(len(target) < MAX_TARGET)

    accepts = garbage_accept if draw(st.integers(0, 4)) == 0 else st.sampled_from(ACCEPTS)
    accept, accept_format = draw(accepts)
    headers: dict[str, str] = {}
    token = draw(
        st.sampled_from(
            [f"fuzzer:{PROJECT}"] * 12
            + [f"admin:{PROJECT}"] * 3
            + [f"admin:{ADMIN_HOME}"] * 2
            + [f"fuzzer:{STRANGER}", ""]
        )
    )
    if token:
        headers["X-Auth-Token"] = token
    elif draw(st.booleans()):
        headers["X-Auth-User"] = "fuzzer"  # noauth's handshake
    if accept is not None:
        headers["Accept"] = accept
    body: bytes | None = None
    if method in ("POST", "PUT") or draw(st.integers(0, 9)) == 0:
        body, content_type = draw(body_and_type(v))
        if content_type is not None:
            headers["Content-Type"] = content_type
    return FuzzRequest(
        route=f"{','.join(route.methods)} {route.template}",
        method=method,
        target=target,
        headers=headers,
        body=body,
        expected_format=_expected_format(path, accept_format),
    )


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    headers: Any
    body: bytes


async def send(http: aiohttp.ClientSession, base: str, request: FuzzRequest) -> Answer:
    """The request exactly as drawn: no URL re-encoding, no Accept or Content-Type of the
    client's own, no redirects followed."""
    async with http.request(
        request.method,
        URL(base + request.target, encoded=True),
        data=request.body,
        headers=request.headers,
        skip_auto_headers=("Accept", "Content-Type"),
        allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=60),
    ) as response:
        return Answer(
            response.status, response.content_type, response.headers, await response.read()
        )


def check(request: FuzzRequest, answer: Answer) -> None:
    """The invariants: no 5xx (bar os-hosts' documented 501 for what no host can do), the
    request id on every response, and every 4xx a v2 fault in the negotiated format."""
    where = f"{request!r} -> {answer.status} {answer.content_type} {answer.body[:500]!r}"
    documented_501 = (
        answer.status == 501
        and request.route.endswith("/os-hosts/{host}{_fmt}")
        and b"maintenance_mode" in (request.body or b"")
    )
    assert answer.status < 500 or documented_501, where
    assert answer.headers.get("x-openstack-request-id", "").startswith("req-"), where
    if not 400 <= answer.status < 500 or request.method == "HEAD":
        return
    assert answer.content_type == request.expected_format, where
    assert_fault(answer.status, answer.content_type, answer.body, where)


def assert_fault(status: int, content_type: str, body: bytes, where: str = "") -> None:
    """``body`` is a v2 fault for ``status`` (guide 1.9): one fault element of the guide's,
    its code the status, with a message; in XML, in the compute namespace."""
    if content_type == JSON:
        document = json.loads(body)
        assert isinstance(document, dict) and len(document) == 1, where
        ((name, fault),) = document.items()
        assert FAULTS.get(name) == status, where
        assert fault["code"] == status and isinstance(fault["message"], str), where
    else:
        root = ET.fromstring(body)
        namespace, _, name = root.tag[1:].partition("}")
        assert namespace == COMPUTE_NS and FAULTS.get(name) == status, where
        assert root.get("code") == str(status), where
        assert root.find(f"{{{COMPUTE_NS}}}message") is not None, where


@FUZZ
@given(data=st.data())
async def test_no_route_answers_5xx_or_a_malformed_fault(
    victims: Victims, data: st.DataObject
) -> None:
    request = data.draw(requests(victims), label="request")
    check(request, await send(victims.http, victims.url, request))


def test_every_route_variable_has_valid_values(victims: Victims) -> None:
    """A route with a path variable the fuzzer has no live value for would only ever be
    fuzzed with junk (404s all the way): give ``Victims.valid`` a value for it."""
    for route in victims.routes:
        for name in route.variables:
            if name not in _STRUCTURAL:
                assert victims.valid(name, "GET", route), (route.template, name)


def test_the_router_is_enumerated(victims: Victims) -> None:
    """The fuzzer sees the application's routes, the admin and bookmark ones included."""
    templates = {route.template for route in victims.routes}
    assert "/v2/{tenant_id}/servers/{server_id}/action{_fmt}" in templates
    assert "/{tenant_id}/servers{_slash}{_fmt}" in templates
    assert "/v2/{tenant_id}/os-hosts/{host}{_fmt}" in templates
    assert "/{path}" in templates


# --- regressions: what the fuzzer found, as plain requests ------------------------------------


def _request(
    method: str,
    target: str,
    *,
    token: str = f"fuzzer:{PROJECT}",
    accept: str | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    expected: str = JSON,
) -> FuzzRequest:
    headers = {"X-Auth-Token": token}
    if accept is not None:
        headers["Accept"] = accept
    if content_type is not None:
        headers["Content-Type"] = content_type
    path = target.split("?", 1)[0]
    return FuzzRequest(
        "regression", method, target, headers, body, _expected_format(path, expected)
    )


async def _status_of(victims: Victims, request: FuzzRequest) -> int:
    answer = await send(victims.http, victims.url, request)
    check(request, answer)
    return answer.status


@pytest.mark.parametrize(
    ("accept", "negotiated"),
    [
        ("application/xml;q=nan", JSON),
        ("application/xml;q=inf, application/json", JSON),
        ("application/json;q=-1, application/xml;q=0.5", XML),
        ("application/xml;q=1e9, application/json;q=0.9", JSON),
    ],
)
async def test_a_q_value_out_of_range_counts_as_zero(
    victims: Victims, accept: str, negotiated: str
) -> None:
    """Was: ``float()`` read nan, inf and 1e9 as q-values, so ``q=nan`` won or lost by the
    order of the ranges and ``q=inf`` beat every valid one (XML for the first two)."""
    target = f"/v2/{PROJECT}/servers/{uuid.uuid4()}"
    request = _request("GET", target, accept=accept, expected=negotiated)
    assert await _status_of(victims, request) == 404


@pytest.mark.parametrize(
    ("method", "target", "accept", "status"),
    [
        ("POST", f"/v2/{PROJECT}/extensions.json", XML, 405),
        ("GET", f"/v2/{PROJECT}/no-such-thing.xml", JSON, 404),
        ("GET", f"/v2/{PROJECT}/servers/a%00b/x.xml", JSON, 400),
        ("DELETE", f"/v2/{PROJECT}/servers/.json", XML, 404),
        ("GET", "/image/v2/images/no-such-image.xml", JSON, 404),
    ],
)
async def test_a_path_suffix_chooses_the_fault_format_where_no_route_parsed_it(
    victims: Victims, method: str, target: str, accept: str, status: int
) -> None:
    """Was: a path no route matched (404, 405, the catch-all's 400), or a suffix taken whole
    as an id (``/servers/.json``), answered in the Accept header's format, though the path
    ends in ``.json``/``.xml`` (the image service, which has no suffixes, excepted)."""
    request = _request(method, target, accept=accept, expected=accept)
    assert await _status_of(victims, request) == status


@pytest.mark.parametrize(
    "query", ["minRam=99999999999", "minDisk=-99999999999", "minRam=2147483648"]
)
@pytest.mark.parametrize("collection", ["flavors", "flavors/detail"])
async def test_a_flavor_filter_beyond_the_columns_range_is_a_bad_request(
    victims: Victims, collection: str, query: str
) -> None:
    """Was: 500, PostgreSQL refusing to compare the integer column with the number."""
    request = _request("GET", f"/v2/{PROJECT}/{collection}?{query}")
    assert await _status_of(victims, request) == 400


@pytest.mark.parametrize(
    "target",
    [
        "servers?flavor=http%3A%2F%2F%5B",
        "servers/detail?image=http%3A%2F%2F%5B%3A%3A1%2Fimages%2Fx",
        "images?server=http%3A%2F%2F%5B",
        "images/detail?server=http%3A%2F%2F%5B%3A%3A1",
    ],
)
async def test_a_reference_filter_that_is_no_url_matches_nothing(
    victims: Victims, target: str
) -> None:
    """Was: 500, ``urlparse`` raising ValueError for an unclosed IPv6 host. A reference that
    is no URL names nothing: an empty list, as for any reference of nothing."""
    answer = await send(victims.http, victims.url, _request("GET", f"/v2/{PROJECT}/{target}"))
    assert answer.status == 200, answer
    (items,) = json.loads(answer.body).values()
    assert items == []


async def test_a_host_update_asking_for_nothing_is_a_bad_request(victims: Victims) -> None:
    """Was: 501 notImplemented, though a body without ``status`` (or
    ``maintenance_mode``) is the client's error; nova answered 400."""
    host = victims.hosts[0]
    for token in (f"admin:{PROJECT}", f"admin:{ADMIN_HOME}"):
        request = _request(
            "PUT",
            f"/v2/{PROJECT}/os-hosts/{host}",
            token=token,
            body=b"{}",
            content_type=JSON,
        )
        assert await _status_of(victims, request) == 400
