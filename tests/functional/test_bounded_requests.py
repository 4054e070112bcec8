"""Bounded work per request: the ``name`` filter is checked before it reaches PostgreSQL, and
a gateway statement that runs past STRATUS_API_STATEMENT_TIMEOUT_S (here a lock wait behind
another transaction) is cancelled and answered 503 with Retry-After, losing nothing."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import asyncpg
import pytest

from stratus.system import System
from tests import conftest
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.databases import fresh_database

TIMEOUT_S = 0.5


@pytest.mark.parametrize(
    "pattern", ["(", "web[", "a{2,1}", "x" * 256, "(?P<n>a)(?P=m)"], ids=str.__len__
)
async def test_a_name_filter_that_is_no_pattern_or_too_long_is_a_400(
    api: ComputeClient, pattern: str
) -> None:
    for collection in ("/servers", "/servers/detail"):
        async with api.session.get(
            api._url(collection), params={"name": pattern}, headers={"X-Auth-Token": api.token}
        ) as response:
            assert response.status == 400, pattern
            fault = await response.json()
        assert fault["badRequest"]["code"] == 400
        assert "name filter" in fault["badRequest"]["message"]


async def test_the_name_filter_fault_is_xml_when_xml_is_asked(api: ComputeClient) -> None:
    async with api.session.get(
        api._url("/servers"),
        params={"name": "x" * 300},
        headers={"X-Auth-Token": api.token, "Accept": "application/xml"},
    ) as response:
        assert response.status == 400
        root = ET.fromstring(await response.text())
    assert root.tag.endswith("badRequest") and root.get("code") == "400"


async def test_a_longest_valid_pattern_still_filters(api: ComputeClient) -> None:
    pattern = "^nothing-" + "x" * 246
    assert len(pattern) == 255
    reply = await api.get(f"/servers?{urlencode({'name': pattern})}")
    assert reply.status == 200
    assert reply.body["servers"] == []


@pytest.fixture(scope="module")
async def bounded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[System]:
    """A system of its own, on a database of its own (its host must never be another
    system's scheduling choice)."""
    tmp = tmp_path_factory.mktemp("bounded")
    settings = conftest.test_settings(tmp, api_statement_timeout_s=TIMEOUT_S)
    async with fresh_database() as url:
        system = System(settings, url, {"bounded-host": conftest.make_driver(tmp)})
        await system.start()
        yield system
        await system.stop()


async def test_a_request_stuck_behind_a_lock_is_cancelled_with_a_503_and_loses_nothing(
    bounded: System, http: aiohttp.ClientSession, tenant: str
) -> None:
    api = ComputeClient(http, bounded.url, tenant, "alice")
    created = await api.create_server("held", IMAGE)
    server_id = created.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    holder = await asyncpg.connect(bounded.database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM servers WHERE id = $1 FOR UPDATE", server_id)
            # the bound is a liveness check (never minutes), not a measurement
            reply = await asyncio.wait_for(
                api.request("PUT", f"/servers/{server_id}", {"server": {"name": "renamed"}}),
                timeout=TIMEOUT_S * 20,
            )
            assert reply.status == 503, reply
            assert reply.body["serviceUnavailable"]["code"] == 503
            assert int(reply.headers["Retry-After"]) > 0
    finally:
        await holder.close()
    shown = await api.get(f"/servers/{server_id}")
    assert shown.body["server"]["name"] == "held"  # the cancelled update changed nothing
    again = await api.request("PUT", f"/servers/{server_id}", {"server": {"name": "renamed"}})
    assert again.status == 200 and again.body["server"]["name"] == "renamed"
    await api.delete_and_wait(server_id)


async def test_the_gateway_pool_bounds_statements_and_the_conductors_does_not(
    bounded: System,
) -> None:
    assert bounded.api_pool is not None and bounded.pool is not None
    assert await bounded.api_pool.fetchval("SHOW statement_timeout") == "500ms"
    assert await bounded.pool.fetchval("SHOW statement_timeout") == "0"
