"""Update Server (Table 2.2) and the list filters of servers (guide 1.5, 2.1.1, 2.1.4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest

from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.xml import ATOM, COMPUTE, JSON, XML, sample, send

OTHER_IMAGE = "11111111-2222-3333-4444-555555555555"


async def _active(api: ComputeClient, name: str, flavor: str = "1", **extra: Any) -> dict[str, Any]:
    reply = await api.create_server(name, IMAGE, flavor, **extra)
    assert reply.status == 202, reply
    return await api.wait_for_status(reply.body["server"]["id"], "ACTIVE")


async def _db_now(system: System) -> datetime:
    assert system.pool is not None
    now: datetime = await system.pool.fetchval("SELECT now()")
    return now


def _ids(reply: Any, collection: str = "servers") -> list[str]:
    assert reply.status == 200, reply
    return [item["id"] for item in reply.body[collection]]


# --- update ---------------------------------------------------------------------------------


@pytest.fixture
async def server(api: ComputeClient) -> AsyncIterator[dict[str, Any]]:
    active = await _active(api, "to-update", metadata={"My Server Name": "Apache1"})
    yield active
    await api.delete_and_wait(active["id"])


async def test_rename_answers_the_whole_updated_server(
    api: ComputeClient, server: dict[str, Any]
) -> None:
    body = json.loads(sample("2.14-server-update-name-request.json"))
    reply = await api.request("PUT", f"/servers/{server['id']}", body)
    assert reply.status == 200, reply
    updated = reply.body["server"]
    assert updated["name"] == "new-server-test"
    # the full representation (Ex 2.16), without show's extension members (OS-EXT-STS,
    # os-keypairs' key_name, os-config-drive's config_drive)
    extensions = ("key_name", "config_drive")
    plain = {k: v for k, v in server.items() if not k.startswith("OS-EXT-") and k not in extensions}
    assert set(updated) == set(plain)
    assert {k: v for k, v in updated.items() if k not in ("name", "updated")} == {
        k: v for k, v in plain.items() if k not in ("name", "updated")
    }
    assert updated["updated"] >= server["updated"]
    shown = (await api.get(f"/servers/{server['id']}")).body["server"]
    assert {k: v for k, v in shown.items() if k in plain} == updated


async def test_access_addresses_are_set_and_cleared(
    api: ComputeClient, server: dict[str, Any]
) -> None:
    path = f"/servers/{server['id']}"
    body = json.loads(sample("2.18-server-update-access-address-request.json"))
    updated = (await api.request("PUT", path, body)).body["server"]
    # nova's canonical (compressed) IPv6 form, not the dotted tail as sent
    assert (updated["accessIPv4"], updated["accessIPv6"]) == ("67.23.10.132", "::babe:4317:a84")
    assert updated["name"] == "to-update"

    cleared = await api.request("PUT", path, {"server": {"accessIPv4": None}})
    assert cleared.status == 200
    assert (cleared.body["server"]["accessIPv4"], cleared.body["server"]["accessIPv6"]) == (
        "",
        "::babe:4317:a84",
    )
    cleared = await api.request("PUT", path, {"server": {"accessIPv6": ""}})
    assert cleared.body["server"]["accessIPv6"] == ""


async def test_updates_in_xml_take_and_give_the_guides_documents(
    api: ComputeClient, server: dict[str, Any]
) -> None:
    path = f"/servers/{server['id']}"
    renamed = await send(api, "PUT", path, sample("2.13-server-update-name-request.xml"))
    assert renamed.status == 200, renamed
    root = renamed.xml
    assert root.tag == f"{COMPUTE}server"
    assert root.attrib["name"] == "new-server-test"
    assert root.attrib["id"] == server["id"]
    assert [child.tag for child in root] == [
        f"{COMPUTE}image",
        f"{COMPUTE}flavor",
        f"{COMPUTE}metadata",
        f"{COMPUTE}addresses",
        f"{ATOM}link",
        f"{ATOM}link",
    ]
    meta = root.find(f"{COMPUTE}metadata/{COMPUTE}meta")
    assert meta is not None and (meta.attrib["key"], meta.text) == ("My Server Name", "Apache1")

    addressed = await send(
        api, "PUT", path, sample("2.17-server-update-access-address-request.xml")
    )
    assert addressed.status == 200, addressed
    assert addressed.xml.attrib["accessIPv4"] == "67.23.10.132"
    assert addressed.xml.attrib["accessIPv6"] == "::babe:4317:a84"
    assert addressed.xml.attrib["name"] == "new-server-test"

    # a JSON request may ask for an XML answer, and the other way round
    as_json = await send(api, "PUT", path, '<server name="again"/>', content_type=XML, accept=JSON)
    assert json.loads(as_json.text)["server"]["name"] == "again"


async def test_bad_updates_are_refused_and_change_nothing(
    api: ComputeClient, server: dict[str, Any]
) -> None:
    path = f"/servers/{server['id']}"
    before = (await api.get(path)).body["server"]
    cases: list[Any] = [
        {"server": {"accessIPv4": "300.1.1.1"}},
        {"server": {"accessIPv4": "::1"}},
        {"server": {"accessIPv6": "10.0.0.1"}},
        {"server": {"accessIPv6": "not-an-address"}},
        {"server": {"accessIPv4": 5}},
        {"server": {"name": "x", "hostId": "abc"}},
        {"server": {"name": "x", "personality": []}},
        {"server": {}},
        {"server": {"metadata": {"a": "b"}}},  # not editable here: nothing to update
        {"server": {"name": ""}},
        {"server": {"name": "   "}},
        {"server": {"name": None}},
        {"server": {"name": "x" * 256}},
        {"server": {"name": 42}},
        {"server": "new-name"},
        {"name": "new-name"},
        {},
        [],
    ]
    for body in cases:
        reply = await api.request("PUT", path, body)
        assert reply.status == 400, (body, reply)
        assert reply.body["badRequest"]["message"]
    for raw, content_type in (
        ("{not json", JSON),
        ("<server", XML),
        ('<server hostId="x" name="y"/>', XML),
        ("<server/>", XML),
    ):
        raw_reply = await send(api, "PUT", path, raw, content_type=content_type, accept=JSON)
        assert raw_reply.status == 400, (raw, raw_reply)
    assert (await api.get(path)).body["server"] == before


async def test_updating_a_server_that_is_not_there_is_404(api: ComputeClient) -> None:
    body = {"server": {"name": "ghost"}}
    for server_id in ("9b0f3e1a-0000-4000-8000-000000000000", "not-a-uuid"):
        reply = await api.request("PUT", f"/servers/{server_id}", body)
        assert reply.status == 404, reply
        assert reply.body["itemNotFound"]["code"] == 404


# --- filters --------------------------------------------------------------------------------


@pytest.fixture
async def three(api: ComputeClient) -> AsyncIterator[dict[str, dict[str, Any]]]:
    """web-1 (flavor 1), web-2 (flavor 2), db-1 (flavor 1), all ACTIVE."""
    made = await asyncio.gather(
        _active(api, "web-1", "1"), _active(api, "web-2", "2"), _active(api, "db-1", "1")
    )
    servers = {s["name"]: s for s in made}
    yield servers
    await asyncio.gather(*(api.delete_and_wait(s["id"]) for s in made))


async def test_filters_narrow_the_list_and_the_detail(
    api: ComputeClient, three: dict[str, dict[str, Any]]
) -> None:
    web1, web2, db1 = (three[n]["id"] for n in ("web-1", "web-2", "db-1"))
    base = f"{api.url}/v2/{api.tenant}"
    expectations: list[tuple[str, set[str]]] = [
        ("name=web", {web1, web2}),
        ("name=%5Edb", {db1}),
        ("name=web-%5B12%5D%24", {web1, web2}),
        ("name=nothing-like-this", set()),
        ("flavor=1", {web1, db1}),
        (f"flavor={quote(base + '/flavors/2', safe='')}", {web2}),
        ("flavor=999", set()),
        (f"image={IMAGE}", {web1, web2, db1}),
        (f"image={quote(base + '/images/' + IMAGE, safe='')}", {web1, web2, db1}),
        (f"image={OTHER_IMAGE}", set()),
        ("image=not-a-uuid", set()),
        ("status=ACTIVE", {web1, web2, db1}),
        ("status=active", {web1, web2, db1}),
        ("status=REBOOT", set()),  # a transient status matches nothing (guide 2.1.1)
        ("status=BUILD", set()),
        ("status=DELETED", set()),  # deleted servers only with changes-since
        ("status=NONSENSE", set()),
        ("name=web&flavor=1", {web1}),
        ("name=web&status=ACTIVE&flavor=2", {web2}),
        ("sort_key=name&all_tenants=1&bogus=yes", {web1, web2, db1}),  # unknown: ignored
    ]
    for query, expected in expectations:
        plain = await api.get(f"/servers?{query}")
        assert set(_ids(plain)) == expected, (query, plain.body)
        detail = await api.get(f"/servers/detail?{query}")
        assert set(_ids(detail)) == expected, query
        assert all(s["status"] == "ACTIVE" for s in detail.body["servers"])

    for query in ("name=%28", "name=web%5B", "name=%00", "flavor=%00"):
        reply = await api.get(f"/servers?{query}")
        assert reply.status == 400, (query, reply)
        assert reply.body["badRequest"]["code"] == 400


async def test_filters_combine_with_pagination(
    api: ComputeClient, three: dict[str, dict[str, Any]]
) -> None:
    for collection in ("/servers", "/servers/detail"):
        seen: list[str] = []
        reply = await api.get(f"{collection}?flavor=1&limit=1")
        while True:
            seen += _ids(reply)
            assert len(reply.body["servers"]) <= 1
            links = reply.body.get("servers_links", [])
            if not links:
                break
            assert "flavor=1" in links[0]["href"] and "limit=1" in links[0]["href"]
            reply = await api.get(links[0]["href"])
        assert sorted(seen) == sorted([three["web-1"]["id"], three["db-1"]["id"]])


# --- changes-since --------------------------------------------------------------------------


async def test_changes_since_accepts_the_guides_forms_and_refuses_others(
    api: ComputeClient, three: dict[str, dict[str, Any]]
) -> None:
    everyone = {s["id"] for s in three.values()}
    for since in (
        "2011-01-24T17:08Z",
        "2011-01-24T17:08:00",
        "2011-01-24T17:08:00Z",
        "2011-01-24T17:08:00%2B01:00",
        "2011-01-24T17:08:00+01:00",  # an unencoded "+" arrives as a space
        "2011-01-24T17:08:00.123456-05:00",
        "2011-01-24",
    ):
        reply = await api.get(f"/servers?changes-since={since}")
        assert set(_ids(reply)) == everyone, since
    future = await api.get("/servers/detail?changes-since=2099-01-01T00:00:00Z")
    assert future.status == 200 and future.body["servers"] == []
    for bad in (
        "yesterday",
        "2011-13-01T00:00:00",
        "2011-01-24T25:00",
        "",
        "0001-01-01T00:00+01:00",
    ):
        reply = await api.get(f"/servers?changes-since={bad}")
        assert reply.status == 400, (bad, reply)
        assert "changes-since" in reply.body["badRequest"]["message"]


async def test_changes_since_shows_only_what_changed_and_deleted_servers_as_deleted(
    api: ComputeClient, system: System
) -> None:
    a = await _active(api, "changes-a")
    b = await _active(api, "changes-b")
    moment = await _db_now(system)
    since = quote(moment.isoformat())
    assert (await api.get(f"/servers?changes-since={since}")).body["servers"] == []

    await api.request("PUT", f"/servers/{a['id']}", {"server": {"name": "changes-a2"}})
    changed = await api.get(f"/servers/detail?changes-since={since}")
    assert [(s["id"], s["name"]) for s in changed.body["servers"]] == [(a["id"], "changes-a2")]

    await api.delete_and_wait(b["id"])
    assert _ids(await api.get("/servers")) == [a["id"]]  # without changes-since: hidden
    assert _ids(await api.get("/servers?status=DELETED")) == []
    detail = await api.get(f"/servers/detail?changes-since={since}")
    statuses = {s["id"]: s["status"] for s in detail.body["servers"]}
    assert statuses == {a["id"]: "ACTIVE", b["id"]: "DELETED"}
    deleted = next(s for s in detail.body["servers"] if s["id"] == b["id"])
    assert deleted["addresses"] == {}  # its addresses were given back
    plain = await api.get(f"/servers?changes-since={since}&status=DELETED")
    assert _ids(plain) == [b["id"]]

    # a page may end on a deleted server: its id is a good marker
    first = await api.get(f"/servers?changes-since={since}&limit=1")
    (link,) = first.body["servers_links"]
    rest = await api.get(link["href"])
    assert rest.status == 200
    assert sorted(_ids(first) + _ids(rest)) == sorted([a["id"], b["id"]])

    xml = await send(api, "GET", f"/servers/detail?changes-since={since}")
    assert {s.attrib["id"]: s.attrib["status"] for s in xml.xml} == statuses
    await api.delete_and_wait(a["id"])
