"""nova 2013.1's os-console-output: ``os-getConsoleOutput`` end to end, from the gateway over
the bus to the host's driver and back, in JSON and XML, and its refusals.

Two hypervisors print the log: the fake one (the consoles' system of test_consoles.py, whose
driver the tests can hold) and libvirt's test hypervisor (the shared functional system, when
the binding is installed), whose driver writes the guest's boot into the server's console
log file. Both guests print fake_guest.py's boot lines, the login prompt last.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from compute_agent.virt.factory import libvirt_available
from compute_agent.virt.fake_guest import ISSUE, LOGIN_PROMPT
from stratus.system import System
from tests import conftest
from tests.functional.test_consoles import HOST, Consoles, consoles  # noqa: F401 (fixture)
from tests.support.actions import COMPUTE_NS, active_server
from tests.support.client import ComputeClient, Reply
from tests.support.gateway import gateway_of_its_own
from tests.support.missing import LIBVIRT_BINDING
from tests.support.xml import send

IMAGE = conftest.IMAGE
ACTION = "os-getConsoleOutput"


# --- the systems and their servers --------------------------------------------------------


@pytest.fixture(params=["fake", "test-hypervisor"])
def hypervisor_system(request: pytest.FixtureRequest) -> System:
    """The system of each hypervisor whose guests print: the fake one's, and libvirt's test
    hypervisor's (the shared system runs it when the binding is installed)."""
    if request.param == "fake":
        fake: Consoles = request.getfixturevalue("consoles")
        return fake.system
    if not libvirt_available():
        pytest.skip(LIBVIRT_BINDING)
    shared: System = request.getfixturevalue("system")
    return shared


@pytest.fixture
def owner(hypervisor_system: System, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, hypervisor_system.url, tenant, "alice")


@pytest.fixture
def api(
    consoles: Consoles,  # noqa: F811
    http: aiohttp.ClientSession,
    tenant: str,
) -> ComputeClient:
    """A member of a fresh project on the fake hypervisor's system."""
    return ComputeClient(http, consoles.system.url, tenant, "alice")


@pytest.fixture
async def server(api: ComputeClient) -> AsyncIterator[str]:
    server_id = await active_server(api, "console-log", IMAGE)
    yield server_id
    await api.delete_and_wait(server_id)


async def _output(
    client: ComputeClient, server_id: str, value: Any = None, **options: Any
) -> Reply:
    """The action with ``value`` as its value (default: no length)."""
    return await client.request(
        "POST", f"/servers/{server_id}/action", {ACTION: value or {}}, **options
    )


async def _log(client: ComputeClient, server_id: str, value: Any = None) -> str:
    reply = await _output(client, server_id, value)
    assert reply.status == 200, reply
    text: str = reply.body["output"]
    return text


def _fault(reply: Reply) -> tuple[int, str, str]:
    ((name, fault),) = reply.body.items()
    return reply.status, name, fault["message"]


# --- the extension -------------------------------------------------------------------------


async def test_the_extension_is_listed_as_nova_listed_it(api: ComputeClient) -> None:
    listed = await api.get("/extensions/os-console-output")
    assert listed.status == 200
    assert listed.body["extension"] == {
        "alias": "os-console-output",
        "name": "ConsoleOutput",
        "namespace": "http://docs.openstack.org/compute/ext/os-console-output/api/v2",
        "updated": "2011-12-08T00:00:00+00:00",
        "description": "Console log output support, with tailing ability.",
        "links": [],
    }
    every = await api.get("/extensions")
    assert "os-console-output" in {e["alias"] for e in every.body["extensions"]}


# --- what the guests print, on both hypervisors ---------------------------------------------


async def test_the_log_holds_the_boot_and_ends_at_the_login_prompt(owner: ComputeClient) -> None:
    server_id = await active_server(owner, "booted", IMAGE)
    try:
        lines = (await _log(owner, server_id)).splitlines()
        assert lines[-1] == LOGIN_PROMPT
        assert lines.count(LOGIN_PROMPT) == 1 and ISSUE in lines
        assert lines[0].startswith("stratus-guest: booting ")
        assert "\r" not in "".join(lines)  # a serial console's CRs go, as nova's did
        # absent, null, -1 and "-1" all mean the whole log
        whole = "\n".join(lines) + "\n"
        for value in ({"length": None}, {"length": -1}, {"length": "-1"}):
            assert await _log(owner, server_id, value) == whole
    finally:
        await owner.delete_and_wait(server_id)


async def test_after_a_reboot_the_boot_is_printed_twice(owner: ComputeClient) -> None:
    server_id = await active_server(owner, "rebooted", IMAGE)
    try:
        first = (await _log(owner, server_id)).splitlines()
        reply = await owner.post(f"/servers/{server_id}/action", {"reboot": {"type": "SOFT"}})
        assert reply.status == 202, reply
        await owner.wait_for_status(server_id, "ACTIVE")
        assert (await _log(owner, server_id)).splitlines() == first + first
        # the last lines are the last of the log, not of the first boot
        assert (await _log(owner, server_id, {"length": len(first)})).splitlines() == first
    finally:
        await owner.delete_and_wait(server_id)


async def test_a_stopped_server_still_shows_how_it_ended(owner: ComputeClient) -> None:
    server_id = await active_server(owner, "stopped", IMAGE)
    try:
        before = await _log(owner, server_id)
        assert (await owner.post(f"/servers/{server_id}/action", {"os-stop": None})).status == 202
        await owner.wait_for_status(server_id, "SHUTOFF")
        assert await _log(owner, server_id) == before
    finally:
        await owner.delete_and_wait(server_id)


# --- length ----------------------------------------------------------------------------------


async def test_length_gives_the_last_lines_of_the_log(api: ComputeClient, server: str) -> None:
    whole = (await _log(api, server)).splitlines(keepends=True)
    assert len(whole) > 2
    assert await _log(api, server, {"length": 2}) == "".join(whole[-2:])
    assert await _log(api, server, {"length": "2"}) == "".join(whole[-2:])
    assert (await _log(api, server, {"length": 1})).rstrip("\n") == LOGIN_PROMPT
    assert await _log(api, server, {"length": 0}) == ""
    assert await _log(api, server, {"length": 10**30}) == "".join(whole)


NO_INTEGER = "Length in request body must be an integer value"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"length": "abc"}, NO_INTEGER),
        ({"length": 1.5}, NO_INTEGER),
        ({"length": "1.5"}, NO_INTEGER),
        ({"length": " 2"}, NO_INTEGER),
        ({"length": True}, NO_INTEGER),
        ({"length": [2]}, NO_INTEGER),
        ({"length": "9" * 5000}, NO_INTEGER),
        ({"length": -2}, "Length in request body must be -1 (the whole log) or more, not -2"),
        ({"length": "-2"}, "must be -1 (the whole log) or more"),
        ({"length": 2, "lines": 2}, "('lines' was unexpected)"),
        ("abc", "os-getConsoleOutput malformed or missing from request body"),
        (5, "os-getConsoleOutput malformed"),
    ],
)
async def test_what_is_no_length_is_400(
    api: ComputeClient, server: str, value: Any, words: str
) -> None:
    status, name, message = _fault(await _output(api, server, value, check_schema=False))
    assert (status, name) == (400, "badRequest")
    assert words in message


# --- XML -------------------------------------------------------------------------------------


async def test_xml_asks_with_an_attribute_and_answers_an_output_element(
    api: ComputeClient, server: str
) -> None:
    path = f"/servers/{server}/action"
    tail = await send(api, "POST", path, f'<{ACTION} xmlns="{COMPUTE_NS}" length="2"/>')
    assert (tail.status, tail.content_type) == (200, "application/xml"), tail.text
    assert tail.text.startswith("<?xml version='1.0' encoding='UTF-8'?>")
    assert tail.xml.tag == "output"  # in no namespace, as nova's default serializer wrote it
    assert tail.xml.text == await _log(api, server, {"length": 2})
    whole = await send(api, "POST", path, f'<{ACTION} xmlns="{COMPUTE_NS}"/>')
    assert whole.xml.text == await _log(api, server)
    # an XML body, a JSON answer
    as_json = await send(api, "POST", path, f'<{ACTION} length="1"/>', accept="application/json")
    assert as_json.status == 200 and LOGIN_PROMPT in as_json.text
    bad = await send(api, "POST", path, f'<{ACTION} length="abc"/>', check_schema=False)
    assert bad.status == 400 and bad.xml.tag.endswith("badRequest")


# --- who may, and when -----------------------------------------------------------------------


async def test_another_project_s_member_is_404_and_an_administrator_is_served(
    consoles: Consoles,  # noqa: F811
    http: aiohttp.ClientSession,
    api: ComputeClient,
    server: str,
) -> None:
    stranger = ComputeClient(http, consoles.system.url, f"t{uuid.uuid4().hex[:10]}", "mallory")
    assert _fault(await _output(stranger, server, check_schema=False))[0] == 404
    admin = ComputeClient(http, consoles.system.url, "admin-home", "admin")
    assert await _log(admin, server) == await _log(api, server)
    unknown = await _output(api, str(uuid.uuid4()), check_schema=False)
    assert unknown.status == 404


async def test_a_locked_server_gives_its_log_and_nothing_is_recorded(
    api: ComputeClient, server: str
) -> None:
    actions = f"/servers/{server}/os-instance-actions"
    assert (await api.post(f"/servers/{server}/action", {"lock": None})).status == 202
    try:
        before = (await api.get(actions)).body
        assert LOGIN_PROMPT in await _log(api, server)
        assert (await api.get(actions)).body == before  # no task, no record
    finally:
        assert (await api.post(f"/servers/{server}/action", {"unlock": None})).status == 202


async def _wait_for(api: ComputeClient, server_id: str, found: Callable[[Any], bool]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = await api.get(f"/servers/{server_id}")
        if found(reply.body["server"]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"server {server_id} never got there: {reply.body}")


async def test_a_server_still_building_is_409(
    api: ComputeClient,
    consoles: Consoles,  # noqa: F811
) -> None:
    held = consoles.driver.hold("spawn")
    created = await api.create_server("building", IMAGE)
    server_id = created.body["server"]["id"]
    try:
        # placed on its host, which has not made its guest yet
        await _wait_for(api, server_id, lambda s: s["OS-EXT-STS:task_state"] == "spawning")
        reply = await _output(api, server_id, check_schema=False)
        assert _fault(reply) == (409, "conflictingRequest", "Instance not yet ready")
    finally:
        held.set()
    await api.wait_for_status(server_id, "ACTIVE")
    assert LOGIN_PROMPT in await _log(api, server_id)
    await api.delete_and_wait(server_id)


async def test_a_server_without_a_host_is_409(
    api: ComputeClient,
    consoles: Consoles,  # noqa: F811
    server: str,
) -> None:
    """As a server is until the scheduler places it (the gateway refuses to create one no
    host can take, so the test takes its host away)."""
    pool = consoles.system.pool
    assert pool is not None
    await pool.execute("UPDATE servers SET host = NULL WHERE id = $1", uuid.UUID(server))
    try:
        reply = await _output(api, server, check_schema=False)
    finally:
        await pool.execute("UPDATE servers SET host = $2 WHERE id = $1", uuid.UUID(server), HOST)
    assert _fault(reply) == (409, "conflictingRequest", "Instance not yet ready")


async def test_a_host_that_does_not_answer_is_503(
    consoles: Consoles,  # noqa: F811
    http: aiohttp.ClientSession,
    tenant: str,
    server: str,
) -> None:
    held = consoles.driver.hold("console_output")
    try:
        async with gateway_of_its_own(
            consoles.system, consoles.tmp, console_call_timeout_s=0.3
        ) as url:
            client = ComputeClient(http, url, tenant, "alice")
            reply = await _output(client, server, check_schema=False)
    finally:
        held.set()
    status, name, message = _fault(reply)
    assert (status, name) == (503, "serviceUnavailable")
    assert "did not give its console output" in message
