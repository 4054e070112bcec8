"""Unknown members of the admin actions' bodies (chapter 3, os-start/os-stop) and of the
metadata bodies (servers and images) are refused as nova v2.1 refuses them: 400 naming the
member, in JSON and in XML, and nothing changes. The bodies today's clients send are taken."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.xml import COMPUTE, JSON, send

NS = COMPUTE[1:-1]

#: Every admin action with the members nova v2.1 allows it (none for most).
ADMIN_ACTIONS: dict[str, dict[str, Any]] = {
    "pause": {},
    "unpause": {},
    "suspend": {},
    "resume": {},
    "migrate": {},
    "resetNetwork": {},
    "injectNetworkInfo": {},
    "lock": {},
    "unlock": {},
    "os-start": {},
    "os-stop": {},
    "createBackup": {"name": "b", "backup_type": "daily", "rotation": 1, "metadata": {"k": "v"}},
    "os-migrateLive": {"host": None, "block_migration": False, "disk_over_commit": False},
    "os-resetState": {"state": "error"},
}


def _unexpected(member: str) -> str:
    return f"Additional properties are not allowed ('{member}' was unexpected)"


def _xml_action(action: str, members: dict[str, Any], extra: str) -> str:
    """``<action>`` with its members as children (the guide's form) and an unknown child."""
    children = "".join(
        f"<{name}>{str(value).lower() if isinstance(value, bool) else value}</{name}>"
        for name, value in members.items()
        if value is not None and name != "metadata"
    )
    if "metadata" in members:
        children += '<metadata><meta key="k">v</meta></metadata>'
    return f'<{action} xmlns="{NS}">{children}<{extra}>x</{extra}></{action}>'


@pytest.fixture
def admin(client_for: Callable[[str, str], ComputeClient], tenant: str) -> ComputeClient:
    return client_for(tenant, "admin")


@pytest.fixture
async def server(api: ComputeClient) -> AsyncIterator[str]:
    reply = await api.create_server("members", IMAGE, metadata={"Label": "Old"})
    server_id: str = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    yield server_id
    await api.delete_and_wait(server_id)


async def _state(system: System, server_id: str) -> tuple[Any, ...]:
    """What any of the actions would change: the server's states, lock and host, the actions
    recorded for it, and the project's images (createBackup)."""
    assert system.pool is not None
    row = await system.pool.fetchrow(
        "SELECT vm_state, task_state, locked, locked_by, host, tenant_id FROM servers"
        " WHERE id = $1",
        uuid.UUID(server_id),
    )
    assert row is not None
    actions = await system.pool.fetchval(
        "SELECT count(*) FROM actions WHERE server_id = $1", uuid.UUID(server_id)
    )
    images = await system.pool.fetchval(
        "SELECT count(*) FROM images WHERE owner = $1", row["tenant_id"]
    )
    return (*row.values(), actions, images)


async def test_every_admin_action_refuses_an_unknown_member_in_json_and_xml(
    admin: ComputeClient, system: System, server: str
) -> None:
    path = f"/servers/{server}/action"
    before = await _state(system, server)
    for action, members in ADMIN_ACTIONS.items():
        reply = await admin.post(path, {action: {**members, "metdata": {"k": "v"}}})
        assert reply.status == 400, (action, reply)
        assert _unexpected("metdata") in reply.body["badRequest"]["message"], (action, reply)

        as_xml = await send(admin, "POST", path, _xml_action(action, members, "colour"))
        assert as_xml.status == 400, (action, as_xml)
        assert _unexpected("colour") in as_xml.text, (action, as_xml)
        # and as an attribute of the action's element
        attribute = f'<{action} xmlns="{NS}" colour="red"/>'
        if not members:
            as_attribute = await send(admin, "POST", path, attribute)
            assert as_attribute.status == 400, (action, as_attribute)
            assert _unexpected("colour") in as_attribute.text, (action, as_attribute)
    assert await _state(system, server) == before


async def test_members_of_later_microversions_are_refused(
    admin: ComputeClient, system: System, server: str
) -> None:
    path = f"/servers/{server}/action"
    before = await _state(system, server)
    refused: list[tuple[str, dict[str, Any], str]] = [
        # 2.73: a lock's reason; 2.30: force; 2.56: a cold migration's destination
        ("lock", {"locked_reason": "maintenance"}, _unexpected("locked_reason")),
        (
            "os-migrateLive",
            {"host": None, "block_migration": False, "disk_over_commit": False, "force": True},
            _unexpected("force"),
        ),
        ("migrate", {"host": "functional-host"}, "migrate takes no destination host"),
    ]
    for action, value, message in refused:
        reply = await admin.post(path, {action: value})
        assert reply.status == 400, (action, reply)
        assert message in reply.body["badRequest"]["message"], (action, reply)
    assert await _state(system, server) == before


async def test_the_bodies_clients_send_are_taken(admin: ComputeClient, server: str) -> None:
    """novaclient and openstacksdk send ``null``; an empty object, ``host: null`` for migrate
    and nova's sample members are taken alike."""
    path = f"/servers/{server}/action"
    bodies: list[dict[str, Any]] = [
        {"lock": None},
        {"unlock": {}},
        {"lock": "yes"},
        {"unlock": None},
    ]
    for body in bodies:
        assert (await admin.post(path, body)).status == 202, body
    reply = await send(admin, "POST", path, f'<lock xmlns="{NS}"/>')
    assert reply.status == 202, reply
    reply = await send(admin, "POST", path, f'<unlock xmlns="{NS}">\n</unlock>')
    assert reply.status == 202, reply
    backup = {"createBackup": {"name": "b", "backup_type": "daily", "rotation": 0}}
    assert (await admin.post(path, backup)).status == 202
    await admin.wait_for_status(server, "ACTIVE")


@pytest.mark.parametrize("owner", ["servers", "images"])
async def test_metadata_bodies_refuse_unknown_members_in_json_and_xml(
    api: ComputeClient, system: System, server: str, owner: str
) -> None:
    if owner == "images":
        assert system.pool is not None
        image = uuid.uuid4()
        await system.pool.execute(
            "INSERT INTO images (id, name, status, progress, owner, is_public)"
            " VALUES ($1, 'img', 'active', 100, $2, false)",
            image,
            api.tenant,
        )
        await system.pool.execute(
            "INSERT INTO image_metadata (image_id, key, value) VALUES ($1, 'Label', 'Old')", image
        )
        path = f"/images/{image}/metadata"
    else:
        path = f"/servers/{server}/metadata"
    json_bodies: list[tuple[str, str, dict[str, Any], str]] = [
        ("PUT", path, {"metadata": {"a": "1"}, "metdata": {"b": "2"}}, "metdata"),
        ("POST", path, {"metadata": {"a": "1"}, "extra": 1}, "extra"),
        ("PUT", f"{path}/a", {"meta": {"a": "1"}, "metadata": {"a": "1"}}, "metadata"),
    ]
    for method, where, body, member in json_bodies:
        reply = await api.request(method, where, body)
        assert reply.status == 400, (method, body, reply)
        assert _unexpected(member) in reply.body["badRequest"]["message"], reply
    xml_bodies: list[tuple[str, str, str, str]] = [
        (
            "PUT",
            path,
            f'<metadata xmlns="{NS}" mode="all"><meta key="a">1</meta></metadata>',
            "mode",
        ),
        (
            "POST",
            path,
            f'<metadata xmlns="{NS}"><meta key="a">1</meta><item key="b">2</item></metadata>',
            "item",
        ),
        ("PUT", f"{path}/a", f'<meta xmlns="{NS}" key="a" colour="red">1</meta>', "colour"),
    ]
    for method, where, text, member in xml_bodies:
        raw = await send(api, method, where, text)
        assert raw.status == 400, (method, text, raw)
        assert _unexpected(member) in raw.text, raw
    assert (await api.get(path)).body == {"metadata": {"Label": "Old"}}
    # the sample forms are still taken
    taken = await send(
        api, "POST", path, f'<metadata xmlns="{NS}"><meta key="a">1</meta></metadata>', accept=JSON
    )
    assert taken.status == 200, taken
    assert (await api.get(path)).body == {"metadata": {"Label": "Old", "a": "1"}}
