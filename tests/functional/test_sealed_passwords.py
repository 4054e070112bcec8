"""Admin passwords go sealed from the gateway to the host (shared/sealing.py), and arrive.

On a fake two-host system of its own, whose hypervisors keep the password each server was
given: what the API user gave reaches the guest (create, changePassword, rebuild) while no
message on the bus ever holds it in clear text; and an agent whose key is not the gateway's
fails the action with a fault that says so, at once, rather than retrying it into the
dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from shared import messages
from shared.bus.memory import MemoryBus
from shared.sealing import Keyring, generate_key
from tests.conftest import IMAGE
from tests.support.actions import act, actions_of, active_server, wait_until_action_done
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster

HOSTS = ("seal-a", "seal-b")


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("sealed-passwords")
    async with fake_cluster(tmp, HOSTS) as the_cluster:
        yield the_cluster


@pytest.fixture
def user(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    return ComputeClient(http, cluster.system.url, tenant, "alice")


@pytest.fixture
def wire(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every message published meanwhile, as the broker would hold it."""
    bus = cluster.system.bus
    assert bus is not None
    published: list[bytes] = []
    publish = bus.publish

    async def spy(routing_key: str, message: messages.Message) -> None:
        published.append(messages.encode(message))
        await publish(routing_key, message)

    monkeypatch.setattr(bus, "publish", spy)
    return published


@contextlib.contextmanager
def _foreign_keys(cluster: Cluster) -> Iterator[Keyring]:
    """Every agent with a key of its own, not the gateway's (a misconfigured deployment),
    for the block."""
    keyring = Keyring.from_setting(generate_key())
    saved = [agent.keyring for agent in cluster.system.agents]
    for agent in cluster.system.agents:
        agent.keyring = keyring
    try:
        yield keyring
    finally:
        for agent, kept in zip(cluster.system.agents, saved, strict=True):
            agent.keyring = kept


async def _password_on_host(cluster: Cluster, server_id: str) -> str:
    driver = await cluster.driver_of(server_id)
    return driver.domains[f"instance-{server_id}"].admin_pass


async def _last_fault(cluster: Cluster, server_id: str) -> str:
    fault: str = await cluster.pool.fetchval(
        "SELECT message FROM server_faults WHERE server_id = $1 ORDER BY id DESC LIMIT 1",
        uuid.UUID(server_id),
    )
    return fault


def _dead_letters(cluster: Cluster) -> list[bytes]:
    assert isinstance(cluster.system.bus, MemoryBus)
    return cluster.system.bus.dead


async def test_the_password_given_reaches_the_guest_and_never_the_wire_in_clear(
    user: ComputeClient, cluster: Cluster, wire: list[bytes]
) -> None:
    created = await user.create_server("sealed", IMAGE, adminPass="Cr3ate-pass")
    assert created.status == 202, created
    server_id = created.body["server"]["id"]
    assert created.body["server"]["adminPass"] == "Cr3ate-pass"
    await user.wait_for_status(server_id, "ACTIVE")
    assert await _password_on_host(cluster, server_id) == "Cr3ate-pass"

    changed = await act(user, server_id, {"changePassword": {"adminPass": "Ch4nge-pass"}})
    assert changed.status == 202, changed
    await wait_until_action_done(cluster.pool, server_id)
    assert await _password_on_host(cluster, server_id) == "Ch4nge-pass"

    rebuilt = await act(user, server_id, {"rebuild": {"imageRef": IMAGE, "adminPass": "R3b-pass"}})
    assert rebuilt.status == 202, rebuilt
    await user.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    assert await _password_on_host(cluster, server_id) == "R3b-pass"

    made_up = await act(user, server_id, {"rebuild": {"imageRef": IMAGE}})
    await user.wait_for_status(server_id, "ACTIVE")
    await wait_until_action_done(cluster.pool, server_id)
    generated = made_up.body["server"]["adminPass"]
    assert await _password_on_host(cluster, server_id) == generated

    kinds = {messages.parse(body).type for body in wire}
    assert {"build_server", "spawn_server", "change_password", "rebuild_server"} <= kinds
    for body in wire:
        for password in ("Cr3ate-pass", "Ch4nge-pass", "R3b-pass", generated):
            assert password.encode() not in body
    await user.delete_and_wait(server_id)


async def test_a_password_change_an_agent_cannot_open_fails_with_a_fault_at_once(
    user: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(user, "wrong-key", IMAGE)
    before = await _password_on_host(cluster, server_id)
    dead = len(_dead_letters(cluster))
    with _foreign_keys(cluster) as foreign:
        refused = await act(user, server_id, {"changePassword": {"adminPass": "nope"}})
        assert refused.status == 202, refused  # accepted: only the host finds it cannot
        await wait_until_action_done(cluster.pool, server_id, timeout_s=5)
    assert (await actions_of(cluster.pool, server_id))[-1] == ("changePassword", "error")
    fault = await _last_fault(cluster, server_id)
    assert "STRATUS_MESSAGE_KEY" in fault and foreign.sealing_key_id in fault
    server = (await user.get(f"/servers/{server_id}")).body["server"]
    assert server["status"] == "ACTIVE"  # as a guest that takes no password leaves it
    assert await _password_on_host(cluster, server_id) == before
    await asyncio.sleep(0.6)  # past the first retry's delay: there was none
    assert len(_dead_letters(cluster)) == dead
    await user.delete_and_wait(server_id)


async def test_a_build_or_rebuild_an_agent_cannot_open_ends_in_error_with_the_fault(
    user: ComputeClient, cluster: Cluster
) -> None:
    server_id = await active_server(user, "wrong-key-rebuild", IMAGE)
    dead = len(_dead_letters(cluster))
    with _foreign_keys(cluster):
        assert (await act(user, server_id, {"rebuild": {"imageRef": IMAGE}})).status == 202
        rebuilt = await user.wait_for_status(server_id, "ERROR", timeout_s=5)
        created = await user.create_server("wrong-key-build", IMAGE)
        built = await user.wait_for_status(created.body["server"]["id"], "ERROR", timeout_s=5)
    for server in (rebuilt, built):
        assert "STRATUS_MESSAGE_KEY" in server["fault"]["message"], server
    assert len(_dead_letters(cluster)) == dead
    for server in (rebuilt, built):
        await user.delete_and_wait(server["id"])
