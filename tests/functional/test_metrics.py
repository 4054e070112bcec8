"""An operator's story: the gateway of ``stratus up`` serves /metrics, /healthz and /readyz
on its API listener, without a token; the metrics tell what the requests, the messages, the
agent, the scheduler and the database did; the request id is on every hop's log lines."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from api_gateway.app import create_app
from conductor.scheduler.scheduler import NoValidHost
from shared.db.hosts import Resources
from shared.logging import current_request_id
from stratus.system import System
from tests import conftest
from tests.conftest import IMAGE
from tests.support.client import ComputeClient
from tests.support.processes import free_port

SERVER_ROUTE = "/v2/{tenant_id}/servers/{server_id}"
SERVERS_ROUTE = "/v2/{tenant_id}/servers"


async def scrape(http: aiohttp.ClientSession, url: str) -> list[Sample]:
    """Every sample ``url``/metrics serves (no token sent)."""
    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture
async def active(api: ComputeClient, system: System) -> AsyncIterator[str]:
    """A server built through the whole system, ACTIVE, then deleted."""
    reply = await api.create_server("measured", IMAGE)
    assert reply.status == 202
    server_id: str = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    yield server_id
    await api.delete_and_wait(server_id)


async def test_requests_are_counted_and_timed_by_route_template(
    api: ComputeClient, system: System, http: aiohttp.ClientSession, active: str
) -> None:
    before = await scrape(http, system.url)
    assert (await api.get(f"/servers/{active}")).status == 200
    assert (await api.get("/servers/detail")).status == 200
    assert (await api.get(f"/servers/{active}.json")).status == 200
    assert (await api.get("/servers/no-such-server")).status == 404
    after = await scrape(http, system.url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    counter = "stratus_http_requests_total"
    assert grew(counter, route=SERVER_ROUTE, method="GET", status="200") == 2  # .json too
    assert grew(counter, route=SERVER_ROUTE, method="GET", status="404") == 1
    assert grew(counter, route="/v2/{tenant_id}/servers/detail", method="GET", status="200") == 1
    histogram = "stratus_http_request_duration_seconds"
    assert grew(f"{histogram}_count", route=SERVER_ROUTE, method="GET") == 3
    assert grew(f"{histogram}_bucket", route=SERVER_ROUTE, method="GET", le="+Inf") == 3
    assert grew(f"{histogram}_sum", route=SERVER_ROUTE, method="GET") > 0
    assert value(after, counter, route=SERVERS_ROUTE, method="POST", status="202") >= 1
    routes = {s.labels["route"] for s in after if s.name == counter}
    assert not [r for r in routes if api.tenant in r or active in r]  # never a raw path


async def test_a_build_shows_in_the_messages_the_agent_and_the_scheduler(
    system: System, http: aiohttp.ClientSession, active: str
) -> None:
    samples = await scrape(http, system.url)
    for kind in ("build_server", "spawn_server", "command_report", "heartbeat"):
        assert value(samples, "stratus_bus_messages_published_total", type=kind) >= 1, kind
        assert value(samples, "stratus_bus_messages_consumed_total", type=kind) >= 1, kind
    action = "stratus_agent_action_duration_seconds"
    assert value(samples, f"{action}_count", action="spawn_server", outcome="success") >= 1
    assert value(samples, f"{action}_sum", action="spawn_server", outcome="success") > 0
    assert value(samples, "stratus_scheduler_duration_seconds_count", outcome="placed") >= 1


async def test_hosts_servers_and_the_pool_are_gauged(
    system: System, http: aiohttp.ClientSession, active: str
) -> None:
    assert system.conductor is not None
    await system.conductor.cluster_state.refresh()  # else it counts every 15 s
    samples = await scrape(http, system.url)
    assert value(samples, "stratus_servers", status="ACTIVE") >= 1
    assert value(samples, "stratus_compute_hosts", state="up") >= 1
    assert value(samples, "stratus_compute_hosts", state="down") >= 0
    assert value(samples, "stratus_cluster_state_updated_timestamp_seconds") > 0
    open_connections = value(samples, "stratus_db_pool_connections")
    assert 1 <= open_connections <= value(samples, "stratus_db_pool_max_connections")
    assert {"in_use", "idle"} <= {
        s.labels["state"] for s in samples if s.name == "stratus_db_pool_connections"
    }


async def test_a_decision_that_finds_no_host_is_counted_as_a_failure(
    system: System, http: aiohttp.ClientSession
) -> None:
    assert system.pool is not None and system.conductor is not None
    before = await scrape(http, system.url)
    huge = Resources(vcpus=10**6, ram_mb=10**9, disk_gb=10**6)
    async with system.pool.acquire() as conn, conn.transaction():
        with pytest.raises(NoValidHost):
            await system.conductor.scheduler.claim(conn, huge)
    after = await scrape(http, system.url)
    failures = "stratus_scheduler_failures_total"
    assert value(after, failures) - value(before, failures) == 1
    timed = "stratus_scheduler_duration_seconds_count"
    assert (
        value(after, timed, outcome="no_valid_host") - value(before, timed, outcome="no_valid_host")
        == 1
    )


async def test_health_and_readiness_answer_without_a_token(
    system: System, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{system.url}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}
    async with http.get(f"{system.url}/readyz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ready", "checks": ["broker", "database"]}


@asynccontextmanager
async def gateway(tmp: Path, pool: asyncpg.Pool, system: System) -> AsyncIterator[str]:
    """A gateway of its own on ``pool``, sharing the system's bus; its URL."""
    assert system.bus is not None
    runner = web.AppRunner(create_app(conftest.test_settings(tmp), pool=pool, bus=system.bus))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_readiness_names_an_unreachable_database(
    system: System, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    nobody = f"postgresql://stratus@127.0.0.1:{free_port()}/stratus"
    pool = await asyncpg.create_pool(nobody, min_size=0, max_size=1)
    try:
        async with gateway(tmp_path, pool, system) as url:
            async with http.get(f"{url}/healthz") as response:
                assert response.status == 200  # alive all the same: restarting would not help
            async with http.get(f"{url}/readyz") as response:
                assert response.status == 503
                body = await response.json()
    finally:
        await pool.close()
    assert body["status"] == "unavailable"
    assert list(body["failed"]) == ["database"]
    assert body["failed"]["database"]


async def test_readiness_names_a_closed_pool(
    system: System, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    assert system.pool is not None
    pool = await asyncpg.create_pool(system.database_url, min_size=1, max_size=1)
    async with gateway(tmp_path, pool, system) as url:
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 200
        await pool.close()
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503
            assert list((await response.json())["failed"]) == ["database"]


class _RequestIds(logging.Handler):
    """Records (logger, request id) of every line, as the log filter stamps it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name, current_request_id()))


@contextmanager
def request_ids() -> Iterator[_RequestIds]:
    handler = _RequestIds()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_the_request_id_is_on_the_lines_of_the_conductor_and_the_agent(
    api: ComputeClient,
) -> None:
    with request_ids() as lines:
        reply = await api.create_server("traced", IMAGE)
        server_id = reply.body["server"]["id"]
        await api.wait_for_status(server_id, "ACTIVE")
    request_id = reply.headers["x-openstack-request-id"]
    loggers = {name for name, rid in lines.seen if rid == request_id}
    assert {"conductor.build", "compute_agent.service"} <= loggers
    await api.delete_and_wait(server_id)
