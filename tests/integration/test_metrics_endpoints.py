"""An operator scrapes every role run as its own ``stratus`` process over the machine's
RabbitMQ and PostgreSQL: the gateway on its API port, the conductor and the agent on their
STRATUS_METRICS_PORT, each serving /metrics, /healthz and /readyz."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.databases import fresh_database
from tests.support.processes import Processes, free_port, wait_until_answering
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix

pytestmark = pytest.mark.integration

HOST = "metrics-host"


@dataclass(frozen=True)
class Roles:
    """Where each role serves its operations endpoints."""

    api: str
    conductor: str
    agent: str


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def roles(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Roles]:
    amqp_url = await require_rabbitmq()
    prefix = unique_prefix()
    api_port, conductor_port, agent_port = free_port(), free_port(), free_port()
    async with fresh_database() as database_url:
        processes = Processes(
            tmp_path,
            {
                "STRATUS_DATABASE_URL": database_url,
                "STRATUS_AMQP_URL": amqp_url,
                "STRATUS_AMQP_PREFIX": prefix,
                "STRATUS_API_PORT": str(api_port),
                "STRATUS_DATA_DIR": str(tmp_path / "data"),
                "STRATUS_HEARTBEAT_INTERVAL_S": "1",
                "STRATUS_LIBVIRT_URI": "test:///default",
                "STRATUS_LOG_JSON": "true",
            },
        )
        processes.env["STRATUS_METRICS_PORT"] = str(conductor_port)
        processes.start("conductor", "conductor")
        processes.env["STRATUS_METRICS_PORT"] = str(agent_port)
        processes.start("agent", "agent", "--host", HOST)
        del processes.env["STRATUS_METRICS_PORT"]  # the gateway serves them on its API port
        processes.start("api", "api")
        found = Roles(
            api=f"http://127.0.0.1:{api_port}",
            conductor=f"http://127.0.0.1:{conductor_port}",
            agent=f"http://127.0.0.1:{agent_port}",
        )
        try:
            for url in (found.api, found.conductor, found.agent):
                await wait_until_answering(url, "/readyz")
            yield found
        except BaseException:
            print(processes.logs())
            raise
        finally:
            processes.stop_all()
            await delete_topology(prefix, ["conductor", "reports", "heartbeats", f"compute.{HOST}"])


async def _metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """``name{label="value",...}`` -> value for every sample ``url`` serves."""
    async with http.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        f"{s.name}{{{','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))}}}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _eventually(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("the metrics never showed it")
        await asyncio.sleep(0.2)


async def test_every_role_is_alive_ready_and_measured(
    roles: Roles, http: aiohttp.ClientSession
) -> None:
    for url, checks in (
        (roles.api, ["broker", "database"]),
        (roles.conductor, ["broker", "database"]),
        (roles.agent, ["broker"]),
    ):
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200, url
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 200, url
            assert (await response.json())["checks"] == checks

    async def heartbeats_flow() -> bool:
        agent = await _metrics(http, roles.agent)
        conductor = await _metrics(http, roles.conductor)
        return (
            agent.get("stratus_bus_messages_published_total{type=heartbeat}", 0) >= 2
            and conductor.get("stratus_bus_messages_consumed_total{type=heartbeat}", 0) >= 2
        )

    await _eventually(heartbeats_flow)
    conductor = await _metrics(http, roles.conductor)
    assert conductor["stratus_db_pool_max_connections{}"] == 10
    assert "stratus_compute_hosts{state=up}" in conductor  # counted at start, then every 15 s
    assert conductor["stratus_bus_messages_consumed_total{type=host_inventory}"] == 1
    api = await _metrics(http, roles.api)
    assert api["stratus_http_requests_total{method=GET,route=/readyz,status=200}"] >= 1
    assert "stratus_compute_hosts{state=up}" not in api  # conductors count, gateways do not
