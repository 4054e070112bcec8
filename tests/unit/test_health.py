"""Readiness and the operations listener of conductors and agents, without a database or a
broker: a check that fails or hangs is named, a listener that cannot bind is skipped, and
every JSON log line carries the role and the request id."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from shared import health
from shared.bus.memory import MemoryBus
from shared.bus.rabbitmq import RabbitBus
from shared.config import Settings
from shared.logging import _JsonFormatter, _RequestIdFilter, request_context
from shared.ops_http import ops_listener
from tests.support.processes import free_port


def _settings(tmp: Path, port: int) -> Settings:
    return Settings.model_validate(
        {"data_dir": tmp, "metrics_host": "127.0.0.1", "metrics_port": port}
    )


async def _hangs() -> None:
    await asyncio.sleep(60)


async def _fine() -> None:
    return None


async def test_readiness_names_each_failed_check_with_its_reason() -> None:
    readiness = health.Readiness(
        {
            "fine": _fine,
            "hangs": _hangs,
            "broker": health.broker(RabbitBus("amqp://127.0.0.1:1/")),  # never connected
        }
    )
    failed = await readiness.failures(timeout_s=0.05)
    assert set(failed) == {"hangs", "broker"}
    assert "0.05" in failed["hangs"]
    assert "not connected" in failed["broker"]


async def test_the_in_process_bus_is_always_connected() -> None:
    assert await health.Readiness(health.checks_for(bus=MemoryBus())).failures() == {}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_listener_serves_metrics_health_and_readiness(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    readiness = health.Readiness({"broker": health.broker(RabbitBus("amqp://127.0.0.1:1/"))})
    async with ops_listener(_settings(tmp_path, free_port()), readiness) as url:
        assert url is not None
        async with http.get(f"{url}/metrics") as response:
            assert response.status == 200
            assert "python_gc_objects_collected_total" in await response.text()
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{url}/readyz") as response:
            assert response.status == 503
            body = await response.json()
    assert body["status"] == "unavailable"
    assert list(body["failed"]) == ["broker"]


async def test_port_zero_turns_the_listener_off(tmp_path: Path) -> None:
    async with ops_listener(_settings(tmp_path, 0), health.Readiness()) as url:
        assert url is None


async def test_a_taken_port_is_logged_and_the_process_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with ops_listener(_settings(tmp_path, port), health.Readiness()) as url:
            assert url is None
    assert "STRATUS_METRICS_PORT" in caplog.text


def test_json_log_lines_carry_the_role_and_the_request_id() -> None:
    record = logging.LogRecord("conductor.service", logging.INFO, __file__, 1, "built", (), None)
    with request_context("req-1234"):
        _RequestIdFilter().filter(record)
    entry = json.loads(_JsonFormatter("conductor").format(record))
    assert (entry["role"], entry["request_id"], entry["message"]) == (
        "conductor",
        "req-1234",
        "built",
    )
