"""Flavor extra specs (os-flavor-extra-specs): everyone reads them, administrators write them.
Every test leaves the shared flavors as it found them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.support.client import ComputeClient

FLAVOR = "3"


@pytest.fixture
async def admin(
    client_for: Callable[[str, str], ComputeClient], tenant: str
) -> AsyncIterator[ComputeClient]:
    """An administrator; the flavor has no extra specs before and after the test."""
    admin = client_for(tenant, "admin")
    assert (await admin.get(f"/flavors/{FLAVOR}/os-extra_specs")).body == {"extra_specs": {}}
    yield admin
    specs = (await admin.get(f"/flavors/{FLAVOR}/os-extra_specs")).body["extra_specs"]
    for key in specs:
        await admin.delete(f"/flavors/{FLAVOR}/os-extra_specs/{key}")


async def test_a_flavor_without_extra_specs_shows_an_empty_set(api: ComputeClient) -> None:
    reply = await api.get("/flavors/1/os-extra_specs")
    assert (reply.status, reply.body) == (200, {"extra_specs": {}})
    assert (await api.get("/flavors/1/os-extra_specs/hw:cpu_policy")).status == 404
    assert (await api.get("/flavors/no-such-flavor/os-extra_specs")).status == 404


async def test_an_administrator_sets_updates_and_removes_them(
    admin: ComputeClient, api: ComputeClient
) -> None:
    specs = f"/flavors/{FLAVOR}/os-extra_specs"
    reply = await admin.post(specs, {"extra_specs": {"hw:cpu_policy": "dedicated", "n": 2}})
    assert (reply.status, reply.body) == (
        200,
        {"extra_specs": {"hw:cpu_policy": "dedicated", "n": "2"}},
    )
    reply = await admin.request("PUT", f"{specs}/n", {"n": "4"})
    assert (reply.status, reply.body) == (200, {"n": "4"})
    assert (await api.get(specs)).body == {"extra_specs": {"hw:cpu_policy": "dedicated", "n": "4"}}
    assert (await api.get(f"{specs}/n")).body == {"n": "4"}
    assert (await admin.delete(f"{specs}/n")).status == 200
    assert (await admin.delete(f"{specs}/n")).status == 404
    assert (await api.get(specs)).body == {"extra_specs": {"hw:cpu_policy": "dedicated"}}


async def test_bad_writes_are_400_and_members_may_not_write(
    admin: ComputeClient, api: ComputeClient
) -> None:
    specs = f"/flavors/{FLAVOR}/os-extra_specs"
    assert (await admin.request("PUT", f"{specs}/a", {"b": "1"})).status == 400
    assert (await admin.request("PUT", f"{specs}/a", {"a": "1", "b": "2"})).status == 400
    assert (await admin.post(specs, {"extra_specs": {"": "x"}})).status == 400
    assert (await admin.post(specs, {"extra_specs": {"a": "x" * 256}})).status == 400
    assert (await admin.post(specs, {"specs": {}})).status == 400
    assert (
        await admin.post("/flavors/none/os-extra_specs", {"extra_specs": {"a": "1"}})
    ).status == 404
    for reply in (
        await api.post(specs, {"extra_specs": {"a": "1"}}),
        await api.request("PUT", f"{specs}/a", {"a": "1"}),
        await api.delete(f"{specs}/a"),
    ):
        assert (reply.status, next(iter(reply.body))) == (403, "forbidden")
    assert (await api.get(specs)).body == {"extra_specs": {}}
