"""An administrator acting as one reaches any project's server by id, and lists every
project's servers when asking for ``all_tenants``; members never do."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import IMAGE
from tests.support.client import ComputeClient


async def test_an_admin_reaches_another_projects_server_by_id(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    server_id = (await api.create_server("theirs", IMAGE)).body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    admin = client_for("admin-home", "admin")
    assert (await admin.get(f"/servers/{server_id}")).body["server"]["tenant_id"] == api.tenant
    reset = await admin.post(f"/servers/{server_id}/action", {"os-resetState": {"state": "error"}})
    assert reset.status == 202
    assert (await api.get(f"/servers/{server_id}")).body["server"]["status"] == "ERROR"
    member = client_for("admin-home", "bob")
    assert (await member.get(f"/servers/{server_id}")).status == 404
    await api.delete_and_wait(server_id)


async def test_all_tenants_lists_every_project_for_admins_only(
    api: ComputeClient, client_for: Callable[[str, str], ComputeClient]
) -> None:
    server_id = (await api.create_server("listed", IMAGE)).body["server"]["id"]
    admin = client_for("admin-home", "admin")
    everyone = await admin.get("/servers/detail?all_tenants=1")
    assert server_id in {s["id"] for s in everyone.body["servers"]}
    own = await admin.get("/servers/detail")
    assert server_id not in {s["id"] for s in own.body["servers"]}
    member = client_for("admin-home", "bob")
    assert server_id not in {
        s["id"] for s in (await member.get("/servers?all_tenants=1")).body["servers"]
    }
    await api.wait_for_status(server_id, "ACTIVE")
    await api.delete_and_wait(server_id)
