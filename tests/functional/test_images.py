"""Images: list filters, changes-since, delete, and the fault of an image in ERROR
(guide 1.5, 1.9.2, 2.5.1–2.5.3)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest

from shared.db import images
from shared.messages import Fault
from stratus.system import System
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.xml import ATOM, COMPUTE, send

SERVER_1 = str(uuid.uuid4())
SERVER_2 = str(uuid.uuid4())


async def _insert(
    system: System,
    *,
    name: str,
    owner: str | None,
    public: bool = False,
    status: str = "active",
    image_type: str = "base",
    server_id: str | None = None,
    min_disk: int = 0,
    min_ram: int = 0,
    progress: int = 100,
) -> str:
    assert system.pool is not None
    new_id = uuid.uuid4()
    await system.pool.execute(
        """INSERT INTO images (id, name, status, progress, owner, is_public, image_type,
                               server_id, min_disk_gb, min_ram_mb)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        new_id,
        name,
        status,
        progress,
        owner,
        public,
        image_type,
        uuid.UUID(server_id) if server_id else None,
        min_disk,
        min_ram,
    )
    return str(new_id)


async def _drop(system: System, *image_ids: str) -> None:
    assert system.pool is not None
    await system.pool.execute(
        "DELETE FROM images WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in image_ids]
    )


def _ids(reply: Any) -> set[str]:
    assert reply.status == 200, reply
    return {image["id"] for image in reply.body["images"]}


@pytest.fixture
async def own(api: ComputeClient, system: System) -> AsyncIterator[dict[str, str]]:
    """A project's own images: a base image, two made from SERVER_1, one failed from SERVER_2."""
    made = {
        "base": await _insert(system, name="base-a", owner=api.tenant, min_disk=10, min_ram=512),
        "snap-1": await _insert(
            system, name="snap-1", owner=api.tenant, image_type="snapshot", server_id=SERVER_1
        ),
        "backup-1": await _insert(
            system,
            name="backup-1",
            owner=api.tenant,
            image_type="backup",
            server_id=SERVER_1,
            status="saving",
            progress=40,
        ),
        "snap-2": await _insert(
            system,
            name="snap-2",
            owner=api.tenant,
            image_type="snapshot",
            server_id=SERVER_2,
            status="killed",
        ),
    }
    yield made
    await _drop(system, *made.values())


async def test_filters_narrow_the_list_and_the_detail(
    api: ComputeClient, own: dict[str, str]
) -> None:
    mine = set(own.values())
    made_from_servers = {own["snap-1"], own["backup-1"], own["snap-2"]}
    server_url = quote(f"{api.url}/v2/{api.tenant}/servers/{SERVER_1}", safe="")
    expectations: list[tuple[str, set[str]]] = [
        (f"server={SERVER_1}", {own["snap-1"], own["backup-1"]}),
        (f"server={server_url}", {own["snap-1"], own["backup-1"]}),
        (f"server={SERVER_2}", {own["snap-2"]}),
        ("server=not-a-uuid", set()),
        ("name=snap-1", {own["snap-1"]}),
        ("name=snap", set()),  # names match exactly
        ("type=SERVER", made_from_servers),
        ("type=server", made_from_servers),
        ("type=snapshot", {own["snap-1"], own["snap-2"]}),  # as the reference implementation
        ("type=backup", {own["backup-1"]}),
        ("status=SAVING", {own["backup-1"]}),
        ("status=ERROR", {own["snap-2"]}),
        ("status=DELETED", set()),  # only with changes-since
        ("status=UNKNOWN", set()),
        ("status=nonsense", set()),
        ("type=SERVER&status=ACTIVE", {own["snap-1"]}),
        ("minDisk=10&minRam=512", {own["base"]}),
        ("minRam=513", set()),
        ("nonsense=1", mine | {IMAGE}),
    ]
    for query, expected in expectations:
        for collection in ("/images", "/images/detail"):
            found = _ids(await api.get(f"{collection}?{query}"))
            if query.startswith(("type=SERVER", "type=server")):
                assert found == expected, (query, collection)  # nobody else's are visible
            else:
                assert found & (mine | {IMAGE}) == expected & (mine | {IMAGE}), (query, found)
                assert expected <= found

    base = _ids(await api.get("/images?type=BASE"))
    assert own["base"] in base and IMAGE in base and not base & made_from_servers
    assert _ids(await api.get("/images?type=ALL")) >= mine | {IMAGE}
    active = _ids(await api.get("/images?status=ACTIVE"))
    assert {own["base"], own["snap-1"], IMAGE} <= active and not active & {
        own["backup-1"],
        own["snap-2"],
    }
    saving = (await api.get("/images/detail?status=SAVING")).body["images"]
    assert [(i["status"], i["progress"]) for i in saving] == [("SAVING", 40)]
    for query in (
        "minRam=lots",
        "minDisk=1.5",
        "minDisk=99999999999",
        "changes-since=soon",
        "name=%00",
        "marker=not-a-uuid",
        f"marker={uuid.uuid4()}",
    ):
        reply = await api.get(f"/images?{query}")
        assert reply.status == 400, (query, reply)
        assert reply.body["badRequest"]["code"] == 400


async def test_filters_combine_with_pagination(api: ComputeClient, own: dict[str, str]) -> None:
    for collection in ("/images", "/images/detail"):
        seen: list[str] = []
        reply = await api.get(f"{collection}?type=SERVER&limit=1")
        while True:
            assert len(reply.body["images"]) <= 1
            seen += [i["id"] for i in reply.body["images"]]
            links = reply.body.get("images_links", [])
            if not links:
                break
            assert "type=SERVER" in links[0]["href"]
            reply = await api.get(links[0]["href"])
        assert sorted(seen) == sorted([own["snap-1"], own["backup-1"], own["snap-2"]])


async def test_an_image_in_error_shows_its_fault(
    api: ComputeClient, own: dict[str, str], system: System
) -> None:
    assert system.pool is not None
    failed = uuid.UUID(own["snap-2"])
    plain = (await api.get(f"/images/{failed}")).body["image"]
    assert plain["status"] == "ERROR" and "fault" not in plain  # no fault recorded
    fault = Fault(code=500, message="An internal error occured", details="Error details")
    assert await images.set_fault(system.pool, failed, fault)

    shown = (await api.get(f"/images/{failed}")).body["image"]
    assert shown["status"] == "ERROR"
    assert shown["server"]["id"] == SERVER_2
    assert set(shown["fault"]) == {"code", "message", "details", "created"}
    assert (shown["fault"]["code"], shown["fault"]["message"], shown["fault"]["details"]) == (
        500,
        "An internal error occured",
        "Error details",
    )
    assert shown["fault"]["created"].endswith("Z")
    listed = (await api.get("/images/detail?status=ERROR")).body["images"]
    assert [i["fault"] for i in listed] == [shown["fault"]]

    root = (await send(api, "GET", f"/images/{failed}")).xml  # Ex 1.50
    assert root.attrib["status"] == "ERROR"
    assert [child.tag for child in root] == [
        f"{COMPUTE}metadata",
        f"{COMPUTE}server",
        f"{COMPUTE}fault",
        f"{ATOM}link",
        f"{ATOM}link",
    ]
    xml_fault = root.find(f"{COMPUTE}fault")
    assert xml_fault is not None
    assert xml_fault.attrib["code"] == "500"
    assert xml_fault.findtext(f"{COMPUTE}message") == "An internal error occured"
    assert xml_fault.findtext(f"{COMPUTE}details") == "Error details"

    ok = (await api.get(f"/images/{own['snap-1']}")).body["image"]
    assert "fault" not in ok


async def test_deleting_an_own_image_leaves_it_to_changes_since(
    api: ComputeClient, own: dict[str, str], system: System
) -> None:
    assert system.pool is not None
    since_dt: datetime = await system.pool.fetchval("SELECT now()")
    since = quote(since_dt.isoformat())
    assert _ids(await api.get(f"/images?changes-since={since}")) == set()

    target = own["snap-1"]
    assert (await api.delete(f"/images/{target}")).status == 204
    assert (await api.get(f"/images/{target}")).status == 404
    assert target not in _ids(await api.get("/images/detail"))
    changed = (await api.get(f"/images/detail?changes-since={since}")).body["images"]
    assert [(i["id"], i["status"]) for i in changed] == [(target, "DELETED")]
    deleted_only = await api.get(f"/images?changes-since={since}&status=DELETED")
    assert _ids(deleted_only) == {target}
    # a changes-since page may end on a deleted image: its id is a good marker
    after = await api.get(f"/images?changes-since={since}&marker={target}")
    assert after.status == 200
    assert (await api.delete(f"/images/{target}")).status == 404

    # metadata changes count as changes too
    await api.post(f"/images/{own['base']}/metadata", {"metadata": {"tier": "gold"}})
    changed_ids = _ids(await api.get(f"/images?changes-since={since}"))
    assert changed_ids == {target, own["base"]}
    old = _ids(await api.get("/images?changes-since=2011-01-24T17:08Z"))
    assert set(own.values()) <= old and IMAGE in old


async def test_who_may_delete_an_image(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient], system: System
) -> None:
    refused = await api.delete(f"/images/{IMAGE}")
    assert refused.status == 403
    assert refused.body["forbidden"]["code"] == 403
    assert (await api.get(f"/images/{IMAGE}")).status == 200

    stranger = f"t{uuid.uuid4().hex[:10]}"
    theirs = await _insert(system, name="theirs", owner=stranger)
    public = await _insert(system, name="provided", owner=None, public=True)
    shared = await _insert(system, name="shared", owner=stranger, public=True)
    try:
        assert (await api.delete(f"/images/{theirs}")).status == 404
        assert (await api.delete(f"/images/{public}")).status == 403
        assert (await api.delete(f"/images/{shared}")).status == 403
        assert (await client_for(stranger, "bob").delete(f"/images/{shared}")).status == 204
        admin = client_for(api.tenant, "admin")
        assert (await admin.delete(f"/images/{public}")).status == 204
        assert (await api.get(f"/images/{public}")).status == 404
        for ghost in (str(uuid.uuid4()), "not-a-uuid"):
            reply = await api.delete(f"/images/{ghost}")
            assert reply.status == 404 and reply.body["itemNotFound"]["code"] == 404
        xml = await send(api, "DELETE", f"/images/{IMAGE}")
        assert xml.status == 403 and xml.xml.tag == f"{COMPUTE}forbidden"
    finally:
        await _drop(system, theirs, public, shared)


async def test_detail_in_xml_carries_server_and_metadata(
    api: ComputeClient, own: dict[str, str]
) -> None:
    await api.request(
        "PUT", f"/images/{own['snap-1']}/metadata/ImageType", {"meta": {"ImageType": "Gold"}}
    )
    root = (await send(api, "GET", f"/images/detail?server={SERVER_1}")).xml  # Ex 2.45
    assert root.tag == f"{COMPUTE}images"
    by_name = {image.attrib["name"]: image for image in root}
    assert set(by_name) == {"snap-1", "backup-1"}
    snap = by_name["snap-1"]
    server = snap.find(f"{COMPUTE}server")
    assert server is not None and server.attrib["id"] == SERVER_1
    meta = snap.find(f"{COMPUTE}metadata/{COMPUTE}meta")
    assert meta is not None and (meta.attrib["key"], meta.text) == ("ImageType", "Gold")
    assert by_name["backup-1"].attrib["status"] == "SAVING"
    assert by_name["backup-1"].attrib["progress"] == "40"
