"""Issue 13: where today's clients assume nova 2013.1's answers (docs/compatibility.md)."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.xml import COMPUTE, XML, send

LONG_V6 = "0000:0000:0000:0000:0000:babe:220.12.22.2"
CANONICAL_V6 = "::babe:dc0c:1602"


# --- 1. access addresses in canonical form ----------------------------------------------------


async def test_an_ipv6_access_address_is_answered_in_canonical_form(api: ComputeClient) -> None:
    created = await api.create_server("v6", IMAGE, accessIPv6=LONG_V6)
    assert created.status == 202, created
    server_id = created.body["server"]["id"]
    shown = await api.wait_for_status(server_id, "ACTIVE")
    assert shown["accessIPv6"] == CANONICAL_V6

    path = f"/servers/{server_id}"
    cleared = await api.request("PUT", path, {"server": {"accessIPv6": ""}})
    assert cleared.body["server"]["accessIPv6"] == ""
    updated = await api.request("PUT", path, {"server": {"accessIPv6": LONG_V6.upper()}})
    assert updated.status == 200, updated
    assert updated.body["server"]["accessIPv6"] == CANONICAL_V6

    as_xml = await send(
        api, "PUT", path, f'<server xmlns="{COMPUTE[1:-1]}" accessIPv6="{LONG_V6}"/>'
    )
    assert as_xml.status == 200, as_xml
    assert as_xml.xml.attrib["accessIPv6"] == CANONICAL_V6
    shown_xml = await send(api, "GET", path)
    assert shown_xml.xml.attrib["accessIPv6"] == CANONICAL_V6

    await api.request("PUT", path, {"server": {"accessIPv6": ""}})
    rebuild = {"rebuild": {"imageRef": IMAGE, "accessIPv6": LONG_V6}}
    rebuilt = await api.post(f"{path}/action", rebuild)
    assert rebuilt.status == 202, rebuilt
    assert rebuilt.body["server"]["accessIPv6"] == CANONICAL_V6
    assert (await api.wait_for_status(server_id, "ACTIVE"))["accessIPv6"] == CANONICAL_V6
    await api.delete_and_wait(server_id)


async def test_an_ipv6_access_address_created_in_xml_is_canonical(api: ComputeClient) -> None:
    body = (
        f'<server xmlns="{COMPUTE[1:-1]}" name="v6x" imageRef="{IMAGE}" flavorRef="1"'
        f' accessIPv6="{LONG_V6}"/>'
    )
    created = await send(api, "POST", "/servers", body, content_type=XML)
    assert created.status == 202, created
    server_id = created.xml.attrib["id"]
    shown = await api.wait_for_status(server_id, "ACTIVE")
    assert shown["accessIPv6"] == CANONICAL_V6
    await api.delete_and_wait(server_id)


# --- 2. limit=0 is an empty page --------------------------------------------------------------


async def test_a_page_of_size_zero_is_empty(api: ComputeClient) -> None:
    server_id = (await api.create_server("counted", IMAGE)).body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    assert len((await api.get("/servers")).body["servers"]) == 1
    for path in ("/servers", "/servers/detail"):
        reply = await api.get(f"{path}?limit=0")
        assert reply.status == 200, reply
        assert reply.body == {"servers": []}
        as_xml = await send(api, "GET", f"{path}?limit=0")
        assert as_xml.status == 200, as_xml
        assert as_xml.xml.tag == f"{COMPUTE}servers" and list(as_xml.xml) == []
    assert (await api.get("/images")).body["images"]  # there are images to see
    for path in ("/images", "/images/detail"):
        reply = await api.get(f"{path}?limit=0")
        assert reply.status == 200, reply
        assert reply.body == {"images": []}
        as_xml = await send(api, "GET", f"{path}?limit=0")
        assert as_xml.xml.tag == f"{COMPUTE}images" and list(as_xml.xml) == []
    # a negative limit is still refused, and no limit is still a full page
    assert (await api.get("/servers?limit=-1")).status == 400
    assert [s["id"] for s in (await api.get("/servers")).body["servers"]] == [server_id]
    await api.delete_and_wait(server_id)


# --- 3. an administrator's all_tenants narrowed by tenant_id ----------------------------------


async def test_an_admin_lists_one_other_project_with_all_tenants_and_tenant_id(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    other = client_for(f"{api.tenant}-b", "carol")
    mine = (await api.create_server("in-a", IMAGE)).body["server"]["id"]
    theirs = (await other.create_server("in-b", IMAGE)).body["server"]["id"]
    await api.wait_for_status(mine, "ACTIVE")
    await other.wait_for_status(theirs, "ACTIVE")
    admin = client_for("admin-home", "admin")

    everyone = await admin.get("/servers/detail?all_tenants=1")
    assert {mine, theirs} <= {s["id"] for s in everyone.body["servers"]}
    for path in ("/servers/detail", "/servers"):
        narrowed = await admin.get(f"{path}?all_tenants=1&tenant_id={api.tenant}")
        assert narrowed.status == 200, narrowed
        assert [s["id"] for s in narrowed.body["servers"]] == [mine]
        as_xml = await send(admin, "GET", f"{path}?all_tenants=1&tenant_id={other.tenant}")
        assert [e.attrib["id"] for e in as_xml.xml] == [theirs]
    nobody = await admin.get("/servers/detail?all_tenants=1&tenant_id=no-such-project")
    assert nobody.body["servers"] == []

    # without all_tenants the administrator's own project is listed, as always
    own = await admin.get(f"/servers/detail?tenant_id={api.tenant}")
    assert not {mine, theirs} & {s["id"] for s in own.body["servers"]}
    # a member's tenant_id never reaches another project
    member = await api.get(f"/servers/detail?all_tenants=1&tenant_id={other.tenant}")
    assert [s["id"] for s in member.body["servers"]] == [mine]

    await api.delete_and_wait(mine)
    await other.delete_and_wait(theirs)


# --- 4. a server in ERROR may be rebuilt --------------------------------------------------------


async def test_a_server_in_error_is_recovered_by_a_rebuild(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    server_id = (await api.create_server("broken", IMAGE)).body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    admin = client_for("admin-home", "admin")
    path = f"/servers/{server_id}/action"

    for form in ("json", "xml"):
        reset = await admin.post(path, {"os-resetState": {"state": "error"}})
        assert reset.status == 202, reset
        assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ERROR"
        if form == "json":
            reply = await api.post(path, {"rebuild": {"imageRef": IMAGE, "name": "mended"}})
            assert reply.status == 202, reply
            # REBUILD while it runs, not ERROR: a client polling for the end reads on
            assert reply.body["server"]["status"] == "REBUILD"
        else:
            reply_xml = await send(
                api, "POST", path, f'<rebuild xmlns="{COMPUTE[1:-1]}" imageRef="{IMAGE}"/>'
            )
            assert reply_xml.status == 202, reply_xml
            assert reply_xml.xml.attrib["status"] == "REBUILD"
        rebuilt = await api.wait_for_status(server_id, "ACTIVE")
        assert rebuilt["name"] == "mended" and "fault" not in rebuilt
    await api.delete_and_wait(server_id)


# --- 5. a blank id is an item not found ---------------------------------------------------------


async def test_a_blank_id_is_not_found_rather_than_a_bad_method(api: ComputeClient) -> None:
    server_id = (await api.create_server("kept", IMAGE, metadata={"k": "v"})).body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    blanks = [
        ("DELETE", "/images/"),
        ("DELETE", "/servers/"),
        ("PUT", "/servers/"),
        ("DELETE", f"/servers/{server_id}/metadata/"),
        ("DELETE", f"/images/{IMAGE}/metadata/"),
    ]
    for method, path in blanks:
        body = {"server": {"name": "x"}} if method == "PUT" else None
        reply = await api.request(method, path, body)
        assert (reply.status, next(iter(reply.body))) == (404, "itemNotFound"), (path, reply)
        as_xml = await send(api, method, path, '<server name="x"/>' if body else None)
        assert as_xml.status == 404, (path, as_xml)
        assert as_xml.xml.tag == f"{COMPUTE}itemNotFound"
    # the blank forms that are the collection stay the collection
    assert (await api.get("/servers/")).body["servers"][0]["id"] == server_id
    assert (await api.get("/images/")).status == 200
    assert (await api.get(f"/servers/{server_id}/metadata/")).body == {"metadata": {"k": "v"}}
    # a method no collection has is still 405
    assert (await api.request("DELETE", "/servers")).status == 405
    # nothing was deleted
    assert (await api.get(f"/servers/{server_id}")).body["server"]["metadata"] == {"k": "v"}
    await api.delete_and_wait(server_id)


# --- 6. update and rebuild answer without show's decorations ----------------------------------


async def test_update_and_rebuild_answers_pass_tempests_schemas(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    """The client checks every JSON answer against tempest's schema of its call
    (tests/support/schemas.py: update_server, rebuild_server_with_admin_pass, get_server)."""
    server_id = (await api.create_server("schemas", IMAGE)).body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    admin = client_for(api.tenant, "admin")  # who would see the most members
    path = f"/servers/{server_id}"
    for who in (api, admin):
        updated = await who.request("PUT", path, {"server": {"name": "renamed"}})
        assert updated.status == 200, updated
        as_xml = await send(who, "PUT", path, f'<server xmlns="{COMPUTE[1:-1]}" name="x"/>')
        assert as_xml.status == 200, as_xml
        assert not [a for a in as_xml.xml.attrib if a.startswith("{")], as_xml.text

        rebuilt = await who.post(f"{path}/action", {"rebuild": {"imageRef": IMAGE}})
        assert rebuilt.status == 202, rebuilt
        await api.wait_for_status(server_id, "ACTIVE")
        rebuilt_xml = await send(
            who, "POST", f"{path}/action", f'<rebuild xmlns="{COMPUTE[1:-1]}" imageRef="{IMAGE}"/>'
        )
        assert rebuilt_xml.status == 202, rebuilt_xml
        assert rebuilt_xml.xml.attrib["adminPass"]
        assert not [a for a in rebuilt_xml.xml.attrib if a.startswith("{")], rebuilt_xml.text
        await api.wait_for_status(server_id, "ACTIVE")

    # show and detail keep them (an administrator sees the host as well)
    shown = (await admin.get(path)).body["server"]
    assert {"OS-EXT-STS:vm_state", "OS-EXT-SRV-ATTR:host"} <= set(shown)
    shown_xml = await send(admin, "GET", path)
    assert [a for a in shown_xml.xml.attrib if a.startswith("{")]
    await api.delete_and_wait(server_id)
