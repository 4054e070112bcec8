"""The functional suite's schema check can fail (tests/support/schemas.py, issue 13).

Every JSON answer the functional client receives is checked against tempest's v2.1 schema of
its call; a suite that passes proves something only if a wrong answer is refused, and only
if each request is paired with the right schema. Both are shown here without Stratus.
"""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.support import schemas
from tests.support.client import ComputeClient
from tests.support.schemas import Call, call_of, check_reply

BASE = "http://127.0.0.1:8774"
URL = f"{BASE}/v2/t1"
LINKS = [
    {"rel": "self", "href": f"{URL}/servers/s1"},
    {"rel": "bookmark", "href": f"{BASE}/t1/servers/s1"},
]
SERVER: dict[str, Any] = {
    "id": "5f0e8c64-4ea1-4d7c-a4a8-9e7f8b1f3a10",
    "name": "web",
    "status": "ACTIVE",
    "progress": 100,
    "image": {"id": "i1", "links": LINKS},
    "flavor": {"id": "1", "links": LINKS},
    "user_id": "alice",
    "tenant_id": "t1",
    "created": "2026-12-07T06:00:00Z",
    "updated": "2026-12-07T06:00:05Z",
    "metadata": {"role": "web"},
    "links": LINKS,
    "addresses": {"private": [{"version": 4, "addr": "10.0.0.2"}]},
    "hostId": "e4d909c290d0fb1ca068ffaddf22cbd0",
    "accessIPv4": "",
    "accessIPv6": "",
    "key_name": None,
    "OS-EXT-STS:vm_state": "active",
    "OS-EXT-STS:task_state": None,
    "OS-EXT-STS:power_state": 1,
}
SHOW = Call("GET", "/servers/{id}")


def test_a_server_as_nova_shows_it_passes() -> None:
    named = check_reply(SHOW, 200, {"server": SERVER}, {})
    assert named is not None
    assert named.name == "v2_1.servers.get_server"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        # the guide's samples show the image's name; tempest's schema forbids it
        (lambda s: s["image"].update(name="cirros"), "'name' was unexpected"),
        (lambda s: s.pop("hostId"), "'hostId' is a required property"),
        (lambda s: s.update(created="yesterday"), "is not a 'iso8601-date-time'"),
        (lambda s: s["addresses"]["private"][0].update(addr="10.0.0.300"), "$.server.addresses"),
        (lambda s: s.update(progress="100"), "'100' is not of type 'integer'"),
    ],
)
def test_a_fabricated_bad_server_is_refused_naming_call_schema_and_reason(
    change: Any, complaint: str
) -> None:
    server = copy.deepcopy(SERVER)
    change(server)
    with pytest.raises(AssertionError) as failure:
        check_reply(SHOW, 200, {"server": server}, {})
    message = str(failure.value)
    assert message.startswith("GET /servers/{id}: 200 answer fails tempest's ")
    assert "v2_1.servers.get_server" in message
    assert complaint in message


def test_a_status_the_schema_does_not_list_is_refused() -> None:
    with pytest.raises(AssertionError, match=r"status 202 not in \[200\]"):
        check_reply(SHOW, 202, {"server": SERVER}, {})


def test_an_action_answered_without_a_body_may_not_grow_one() -> None:
    reboot = Call("POST", "/servers/{id}/action", "reboot")
    assert check_reply(reboot, 202, {}, {}) is not None
    with pytest.raises(AssertionError, match="the schema has no body"):
        check_reply(reboot, 202, {"server": SERVER}, {})


def test_errors_unknown_calls_and_multiple_create_are_not_checked() -> None:
    assert check_reply(SHOW, 404, {"itemNotFound": {"code": 404}}, {}) is None
    assert check_reply(None, 200, {"anything": 1}, {}) is None
    assert check_reply(Call("GET", "/extensions/{alias}"), 200, {"extension": {}}, {}) is None
    create = Call("POST", "/servers")
    assert check_reply(create, 202, {"reservation_id": "r-3fhpjulh"}, {}) is None
    with pytest.raises(AssertionError, match="'adminPass' is a required property"):
        check_reply(create, 202, {"server": {"id": "s1", "links": LINKS}}, {})


def test_a_redirection_is_the_multiple_choices_document() -> None:
    choices = {"choices": [{"id": "v2.0", "status": "CURRENT", "links": [], "media-types": []}]}
    named = check_reply(Call("GET", "/servers"), 300, choices, {})
    assert named is schemas.MULTIPLE_CHOICES
    with pytest.raises(AssertionError, match=r"versions\.get_version"):
        check_reply(Call("GET", "/servers"), 300, {"servers": []}, {})


@pytest.mark.parametrize(
    ("method", "url", "body", "call"),
    [
        ("GET", f"{BASE}/", None, Call("GET", "/")),
        ("GET", f"{BASE}/v2/", None, Call("GET", "/v2/")),
        ("GET", f"{BASE}/v2", None, Call("GET", "/v2/")),
        ("GET", f"{URL}/servers/detail?limit=1", None, Call("GET", "/servers/detail")),
        ("GET", f"{URL}/servers/s1.json", None, SHOW),
        ("GET", f"{BASE}/t1/servers/s1", None, SHOW),  # the bookmark form
        (
            "GET",
            f"{URL}/flavors/1/os-extra_specs/hw:cpu",
            None,
            Call("GET", "/flavors/{id}/os-extra_specs/{key}"),
        ),
        (
            "POST",
            f"{URL}/servers/s1/action",
            {"reboot": {"type": "HARD"}},
            Call("POST", "/servers/{id}/action", "reboot"),
        ),
        (
            "GET",
            f"{URL}/os-quota-sets/t1/defaults",
            None,
            Call("GET", "/os-quota-sets/{tenant}/defaults"),
        ),
        ("GET", f"{BASE}/image/v2/images", None, None),  # the image service: not nova's
    ],
)
def test_requests_are_paired_with_their_call(
    method: str, url: str, body: Any, call: Call | None
) -> None:
    assert call_of(method, url, body) == call


def test_an_xml_action_is_named_by_its_root_element() -> None:
    data = b'<reboot xmlns="http://docs.openstack.org/compute/api/v1.1" type="SOFT"/>'
    assert call_of("POST", f"{URL}/servers/s1/action", data=data) == Call(
        "POST", "/servers/{id}/action", "reboot"
    )


def test_a_microversion_request_is_not_checked_against_v2_1() -> None:
    assert schemas.asks_microversion({"X-OpenStack-Nova-API-Version": "2.79"})
    assert schemas.asks_microversion({"OpenStack-API-Version": "compute 2.53"})
    assert not schemas.asks_microversion({"OpenStack-API-Version": "compute 2.1"})
    assert not schemas.asks_microversion({"X-Auth-Token": "alice:t1"})


async def test_the_client_fails_a_call_whose_answer_breaks_its_schema() -> None:
    """The hook itself: ComputeClient.request checks what it receives, unless told not to."""
    bad = copy.deepcopy(SERVER)
    bad["image"]["name"] = "cirros"

    async def show(request: web.Request) -> web.Response:
        return web.json_response({"server": bad})

    app = web.Application()
    app.router.add_get("/v2/t1/servers/{id}", show)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        api = ComputeClient(session, str(server.make_url("")).rstrip("/"), "t1", "alice")
        with pytest.raises(AssertionError, match=r"GET /servers/\{id\}: 200 answer fails"):
            await api.get("/servers/s1")
        unchecked = await api.request("GET", "/servers/s1", check_schema=False)
        assert unchecked.body == {"server": bad}
