"""A `noauth` gateway never serves beyond loopback by accident: `stratus api` on 0.0.0.0
refuses to start with one line naming the setting; on 127.0.0.1 it starts; with
STRATUS_NOAUTH_ALLOW_REMOTE it starts on every interface and warns at each start."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from api_gateway.auth.exposure import UnsafeExposure, check_exposure, is_loopback
from stratus.system import System
from tests import conftest
from tests.support.databases import fresh_database
from tests.support.processes import STRATUS, free_port


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"])
def test_loopback_addresses_are_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "2001:db8::1"])
def test_every_interface_or_another_address_is_not(host: str) -> None:
    assert not is_loopback(host)


def test_stratus_api_refuses_noauth_on_every_interface(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATUS_")}
    env |= {
        "STRATUS_API_HOST": "0.0.0.0",
        "STRATUS_API_PORT": str(free_port()),
        "STRATUS_DATA_DIR": str(tmp_path),
        "STRATUS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    done = subprocess.run([STRATUS, "api"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "STRATUS_AUTH_STRATEGY=noauth" in lines[0]
    assert "STRATUS_NOAUTH_ALLOW_REMOTE" in lines[0]
    assert "'0.0.0.0'" in lines[0]


def test_keystone_gateways_may_listen_anywhere(tmp_path: Path) -> None:
    settings = conftest.test_settings(
        tmp_path,
        api_host="0.0.0.0",
        auth_strategy="keystone",
        keystone_url="http://127.0.0.1:1/v3",
        keystone_username="stratus",
        keystone_password="x",
        keystone_project="service",
    )
    check_exposure(settings)  # no refusal


async def _serves(system: System) -> None:
    port = system.url.rsplit(":", 1)[1]
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/", headers={"Accept": "application/json"}) as r,
    ):
        assert r.status == 200


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A database of this test's own: its host must never be the shared system's choice."""
    async with fresh_database() as url:
        yield url


async def test_a_system_on_every_interface_starts_nothing_without_the_override(
    database_url: str, tmp_path: Path
) -> None:
    system = System(
        conftest.test_settings(tmp_path, api_host="0.0.0.0"),
        database_url,
        {"h": conftest.make_driver(tmp_path)},
    )
    with pytest.raises(UnsafeExposure, match="STRATUS_NOAUTH_ALLOW_REMOTE"):
        await system.start()
    assert system.pool is None and system.conductor is None and not system.agents


async def test_noauth_on_loopback_starts_without_a_warning(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    system = System(
        conftest.test_settings(tmp_path), database_url, {"h": conftest.make_driver(tmp_path)}
    )
    with caplog.at_level(logging.WARNING, logger="api_gateway.auth.exposure"):
        await system.start()
    try:
        await _serves(system)
    finally:
        await system.stop()
    assert not [r for r in caplog.records if r.name == "api_gateway.auth.exposure"]


async def test_the_override_starts_on_every_interface_and_warns(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = conftest.test_settings(tmp_path, api_host="0.0.0.0", noauth_allow_remote=True)
    system = System(settings, database_url, {"h": conftest.make_driver(tmp_path)})
    with caplog.at_level(logging.WARNING, logger="api_gateway.auth.exposure"):
        await system.start()
    try:
        await _serves(system)
    finally:
        await system.stop()
    warnings = [r for r in caplog.records if r.name == "api_gateway.auth.exposure"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "administrator" in warnings[0].getMessage()
