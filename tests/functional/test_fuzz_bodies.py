"""Malformed, mistyped, oversized and unicode bodies at every body-taking route: always a 4xx
fault in the negotiated format, never a 500, and nothing changes in the database."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient

FUZZ = settings(
    # the nightly run (``make fuzz``) sets STRATUS_FUZZ_EXAMPLES=10000
    max_examples=int(os.environ.get("STRATUS_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: values of the wrong type for any member that wants a string or an object
wrong_values = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.text(min_size=256, max_size=400),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
garbage_json = st.text(max_size=200).filter(lambda t: not _is_json(t))
garbage_xml = st.one_of(
    st.text(max_size=200).map(lambda t: f"<server {t}"),
    st.just(
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><server>&b;</server>'
    ),
    st.just('<!DOCTYPE r SYSTEM "file:///etc/passwd"><server name="x"/>'),
    st.text(alphabet="<>/=\"' abc", max_size=80),
)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


async def _snapshot(system: System, tenant: str) -> tuple[Any, ...]:
    """Everything a project owns, to prove a refused request changed nothing."""
    assert system.pool is not None
    return tuple(
        await system.pool.fetch(
            """SELECT id, name, vm_state, task_state, version FROM servers WHERE tenant_id = $1
               ORDER BY id""",
            tenant,
        )
    ) + tuple(
        await system.pool.fetch(
            "SELECT id, action, result FROM actions WHERE tenant_id = $1 ORDER BY id", tenant
        )
    )


async def _send(
    api: ComputeClient, method: str, path: str, body: bytes, content_type: str, accept: str
) -> tuple[int, str, bytes]:
    async with api.session.request(
        method,
        f"{api.url}/v2/{api.tenant}{path}",
        data=body,
        headers={"X-Auth-Token": api.token, "Content-Type": content_type, "Accept": accept},
    ) as response:
        return response.status, response.content_type, await response.read()


def _assert_fault(status: int, content_type: str, body: bytes, accept: str) -> None:
    assert 400 <= status < 500, (status, body[:300])
    assert content_type == accept, content_type
    if accept == "application/json":
        (fault,) = json.loads(body).values()
        assert fault["code"] == status
    else:
        assert f'code="{status}"'.encode() in body


Mutation = Callable[[dict[str, Any]], dict[str, Any]]


def _replace(key: str, value: object) -> Mutation:
    def mutate(server: dict[str, Any]) -> dict[str, Any]:
        return {**server, key: value}

    return mutate


VALID_CREATE = {"name": "fuzz", "imageRef": IMAGE, "flavorRef": "1"}


@st.composite
def invalid_create_bodies(draw: st.DrawFn) -> Any:
    """Bodies of POST /servers that are wrong by construction."""
    kind = draw(st.sampled_from(["member", "top", "metadata", "personality", "name"]))
    if kind == "member":
        key = draw(st.sampled_from(["name", "imageRef", "flavorRef", "accessIPv4", "accessIPv6"]))
        value = draw(
            wrong_values.filter(
                lambda v: (
                    (not isinstance(v, int) or key != "flavorRef")
                    and (v is not None or not key.startswith("access"))
                )
            )
        )
        return {"server": _replace(key, value)(VALID_CREATE)}
    if kind == "top":
        return draw(st.one_of(wrong_values, st.just({}), st.just({"servers": VALID_CREATE})))
    if kind == "metadata":
        bad = draw(
            st.one_of(
                st.dictionaries(
                    st.text(min_size=256, max_size=300), st.text(max_size=3), min_size=1, max_size=2
                ),
                st.dictionaries(
                    st.text(min_size=1, max_size=5),
                    wrong_values.filter(lambda v: not isinstance(v, str)),
                    min_size=1,
                    max_size=2,
                ),
                st.lists(st.text(), min_size=1, max_size=2),
            )
        )
        return {"server": {**VALID_CREATE, "metadata": bad}}
    if kind == "personality":
        bad_file = draw(
            st.one_of(
                st.fixed_dictionaries(
                    {
                        "path": st.just("/etc/x"),
                        "contents": st.text(min_size=1).map(lambda t: t + "!"),
                    }
                ),
                st.fixed_dictionaries({"path": wrong_values, "contents": st.just("aGk=")}),
            )
        )
        return {"server": {**VALID_CREATE, "personality": [bad_file]}}
    name = draw(st.one_of(st.just(""), st.text(min_size=256, max_size=300), st.just("   ")))
    return {"server": {**VALID_CREATE, "name": name}}


@pytest.mark.parametrize("accept", ["application/json", "application/xml"])
@FUZZ
@given(body=invalid_create_bodies())
async def test_create_server_refuses_bad_bodies_cleanly(
    api: ComputeClient, system: System, accept: str, body: Any
) -> None:
    before = await _snapshot(system, api.tenant)
    raw = json.dumps(body).encode()
    _assert_fault(*await _send(api, "POST", "/servers", raw, "application/json", accept), accept)
    assert await _snapshot(system, api.tenant) == before


# --- every other route that takes a body ------------------------------------------------------

#: (method, path template, top-level key, members and whether each is limited to 255
#: characters); ``{server}`` and ``{image}`` are a live server and an image of the project.
ROUTES: list[tuple[str, str, str, dict[str, bool]]] = [
    ("PUT", "/servers/{server}", "server", {"name": True, "accessIPv4": True}),
    ("POST", "/servers/{server}/action", "changePassword", {"adminPass": False}),
    ("POST", "/servers/{server}/action", "reboot", {"type": True}),
    ("POST", "/servers/{server}/action", "rebuild", {"imageRef": True, "name": True}),
    ("POST", "/servers/{server}/action", "resize", {"flavorRef": True}),
    ("POST", "/servers/{server}/action", "createImage", {"name": True}),
    ("PUT", "/servers/{server}/metadata", "metadata", {"k": True}),
    ("POST", "/servers/{server}/metadata", "metadata", {"k": True}),
    ("PUT", "/servers/{server}/metadata/k", "meta", {"k": True}),
    ("PUT", "/images/{image}/metadata", "metadata", {"k": True}),
    ("POST", "/images/{image}/metadata", "metadata", {"k": True}),
    ("PUT", "/images/{image}/metadata/k", "meta", {"k": True}),
]

not_strings = wrong_values.filter(lambda v: not isinstance(v, str))


@st.composite
def invalid_bodies(draw: st.DrawFn, top: str, members: dict[str, bool]) -> Any:
    """A body for a route with top-level key ``top``: wrong by construction."""
    kinds = ["top", "member", "unknown"] + (["two"] if top not in ("metadata", "meta") else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "top":
        return draw(st.one_of(not_strings.filter(lambda v: v is not None), st.just([])))
    if kind == "member":
        key = draw(st.sampled_from(sorted(members)))
        too_long = st.text(min_size=256, max_size=300)  # for members limited to 255
        bad = draw(
            st.one_of(
                not_strings.filter(lambda v: v is not None or top in ("metadata", "meta")),
                too_long if members[key] else st.nothing(),
            )
        )
        if key == "name" and isinstance(bad, str) and top in ("createImage", "rebuild"):
            bad = {"nested": bad}
        return {top: {key: bad}}
    if kind == "unknown":
        # a prefix no action or resource key has, so a drawn "pause" cannot be a valid request
        return {"unknown:" + draw(st.text(max_size=20)): {}}
    return {top: {k: "x" for k in members}, "notAnAction": {}}


@pytest.fixture(scope="module")
async def victims(system: System, http: Any) -> tuple[ComputeClient, str, str]:
    """A project with an active server and an image of its own, shared by the route fuzzers."""
    api = ComputeClient(http, system.url, "fuzz-routes", "alice")
    server_id = (await api.create_server("victim", IMAGE)).body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    image = await api.post(f"/servers/{server_id}/action", {"createImage": {"name": "v"}})
    image_id = image.headers["Location"].rsplit("/", 1)[-1]
    for _ in range(200):
        if (await api.get(f"/images/{image_id}")).body["image"]["status"] == "ACTIVE":
            break
        await __import__("asyncio").sleep(0.05)
    return api, server_id, image_id


@pytest.mark.parametrize(
    ("method", "path", "top", "members"), ROUTES, ids=[f"{m} {p} {t}" for m, p, t, _ in ROUTES]
)
@FUZZ
@given(data=st.data())
async def test_every_body_taking_route_refuses_bad_bodies_cleanly(
    victims: tuple[ComputeClient, str, str],
    system: System,
    method: str,
    path: str,
    top: str,
    members: dict[str, bool],
    data: st.DataObject,
) -> None:
    api, server_id, image_id = victims
    body = data.draw(invalid_bodies(top, members))
    accept = data.draw(st.sampled_from(["application/json", "application/xml"]))
    before = await _snapshot(system, api.tenant)
    target = path.format(server=server_id, image=image_id)
    raw = json.dumps(body).encode()
    _assert_fault(*await _send(api, method, target, raw, "application/json", accept), accept)
    assert await _snapshot(system, api.tenant) == before


@FUZZ
@given(text=garbage_json)
async def test_unparsable_json_is_a_bad_request(
    api: ComputeClient, system: System, text: str
) -> None:
    before = await _snapshot(system, api.tenant)
    reply = await _send(
        api, "POST", "/servers", text.encode(), "application/json", "application/json"
    )
    _assert_fault(*reply, "application/json")
    assert await _snapshot(system, api.tenant) == before


@FUZZ
@given(text=garbage_xml)
async def test_unparsable_or_dangerous_xml_is_a_bad_request(
    api: ComputeClient, system: System, text: str
) -> None:
    before = await _snapshot(system, api.tenant)
    reply = await _send(
        api, "POST", "/servers", text.encode(), "application/xml", "application/xml"
    )
    _assert_fault(*reply, "application/xml")
    assert await _snapshot(system, api.tenant) == before


@pytest.mark.parametrize("bad", ["\\u0000", "a\\u0000b", "\\ud800", "x\\udfff"])
async def test_strings_the_database_cannot_store_are_bad_requests(
    api: ComputeClient, system: System, bad: str
) -> None:
    """A JSON string may carry a NUL or a lone surrogate; PostgreSQL text may not."""
    before = await _snapshot(system, api.tenant)
    bodies = [
        f'{{"server": {{"name": "{bad}", "imageRef": "{IMAGE}", "flavorRef": "1"}}}}',
        f'{{"server": {{"name": "ok", "imageRef": "{IMAGE}", "flavorRef": "1",'
        f' "metadata": {{"{bad}": "v"}}}}}}',
    ]
    for body in bodies:
        status, content_type, raw = await _send(
            api, "POST", "/servers", body.encode(), "application/json", "application/json"
        )
        _assert_fault(status, content_type, raw, "application/json")
    status, content_type, raw = await _send(
        api, "GET", "/servers/detail?name=a%00b", b"", "application/json", "application/json"
    )
    _assert_fault(status, content_type, raw, "application/json")
    assert await _snapshot(system, api.tenant) == before
