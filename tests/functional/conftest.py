"""Fixtures of the functional tests that place servers and give them addresses on a compute
host of their own (tests/support/ipam_builds.py): a module names its host ``HOST`` and
gets a database of its own with that host in it, and the pools of its conductors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support import ipam_builds


@pytest.fixture(scope="module")
async def host_database_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh database with one big compute host, the module's ``HOST``."""
    async with ipam_builds.database_with_host(request.module.HOST) as url:
        yield url


@pytest.fixture
async def conductors(host_database_url: str) -> AsyncIterator[list[asyncpg.Pool]]:
    """The database connections of four conductors (each its own pool); their servers are
    deleted after."""
    async with ipam_builds.conductor_pools(host_database_url, 4) as made:
        yield made


@pytest.fixture
async def conductor_pool(host_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The database connections of one conductor; its servers are deleted after."""
    async with ipam_builds.conductor_pools(host_database_url, 1) as (made,):
        yield made
