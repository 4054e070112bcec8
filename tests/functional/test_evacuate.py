"""Evacuate (nova's os-evacuate, administrators; ``stratus host evacuate``): a server whose host
is gone is rebuilt from its image on another host, the same server, and the dead host, when it
comes back, destroys its stale copy instead of running it.

A host "dies" here as one does: its agent stops (no more heartbeats, no commands taken), and
the database says what a conductor would after ``host_down_after_s`` of silence (its last
heartbeat long ago, marked down). It "returns" as an agent does after a reboot: a new agent on
the same hypervisor, whose domains are still there, reports them when it starts.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from novaclient import exceptions as nova_exceptions

from compute_agent.simulation import AgentOptions
from shared.db import hosts
from shared.sealing import Keyring
from stratus import cli
from tests.clients.conftest import nova
from tests.conftest import IMAGE
from tests.support.actions import FLAVORS, act, actions_of, host_usage, server_row
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix
from tests.support.sealing import MESSAGE_KEY
from tests.support.xml import send

HOSTS = ("east", "west")
IDLE = (0, 0, 0)


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with fake_cluster(tmp_path_factory.mktemp("evacuate"), HOSTS) as the_cluster:
        yield the_cluster


@pytest.fixture
def admin(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    """An administrator of a fresh project."""
    return ComputeClient(http, cluster.system.url, tenant, "admin")


@pytest.fixture
def member(cluster: Cluster, http: aiohttp.ClientSession, tenant: str) -> ComputeClient:
    """A member of the same project."""
    return ComputeClient(http, cluster.system.url, tenant, "alice")


@pytest.fixture(autouse=True)
async def _hosts_end_idle(cluster: Cluster) -> AsyncIterator[None]:
    """Every test deletes what it made and brings back the hosts it killed."""
    assert await cluster.usage() == {host: IDLE for host in HOSTS}
    yield
    assert await cluster.usage() == {host: IDLE for host in HOSTS}
    assert all(not driver.domains for driver in cluster.drivers.values())


async def kill(cluster: Cluster, host: str) -> None:
    """``host`` is gone: its agent stops, and a conductor has judged it down."""
    agent = next(a for a in cluster.system.agents if a.host == host)
    await agent.stop()
    await asyncio.sleep(0.3)  # a heartbeat it sent just before is heard first
    await cluster.pool.execute(
        """UPDATE compute_hosts SET last_heartbeat = now() - interval '1 hour', up = false
            WHERE name = $1""",
        host,
    )


async def revive(cluster: Cluster, host: str) -> None:
    """``host`` comes back: a new agent on the same hypervisor (its domains still there)."""
    system = cluster.system
    keyring = Keyring.from_setting(system.settings.message_key)
    assert system.bus is not None
    agent = AgentOptions.of(system.settings, keyring).agent(host, system.bus, cluster.drivers[host])
    await agent.start()
    system.agents = [a for a in system.agents if a.host != host] + [agent]
    await system.wait_for_hosts([host])


@asynccontextmanager
async def dead(cluster: Cluster, host: str) -> AsyncIterator[None]:
    """``host`` is gone for the block, and comes back after it."""
    await kill(cluster, host)
    try:
        yield
    finally:
        await revive(cluster, host)


async def until(condition: Any, what: str, timeout_s: float = 15.0) -> None:
    """Wait for ``condition()`` (sync or async) to hold."""
    for _ in range(int(timeout_s / 0.05)):
        held = condition()
        if asyncio.iscoroutine(held):
            held = await held
        if held:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def server(api: ComputeClient, name: str, **extra: Any) -> str:
    reply = await api.create_server(name, IMAGE, "1", **extra)
    assert reply.status == 202, reply
    server_id: str = reply.body["server"]["id"]
    await api.wait_for_status(server_id, "ACTIVE")
    return server_id


def evacuate(**members: Any) -> dict[str, Any]:
    return {"evacuate": members}


def domain_name(server_id: str) -> str:
    return f"instance-{server_id}"


# --- refusals ----------------------------------------------------------------------------------


async def test_refused_with_409_while_the_servers_host_is_up_in_json_and_xml(
    admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await server(admin, "alive")
    host = await cluster.host_of(server_id)

    refused = await act(admin, server_id, evacuate(onSharedStorage=False))
    assert refused.status == 409, refused
    assert refused.body["conflictingRequest"] == {
        "code": 409,
        "message": f"Compute service of {host} is still in use.",
    }
    xml_body = (
        '<evacuate xmlns="http://docs.openstack.org/compute/api/v2" onSharedStorage="False"/>'
    )
    as_xml = await send(admin, "POST", f"/servers/{server_id}/action", xml_body)
    assert as_xml.status == 409
    root = as_xml.xml
    assert root.tag.endswith("conflictingRequest") and root.attrib["code"] == "409"
    message = next(child for child in root if child.tag.endswith("message"))
    assert message.text == f"Compute service of {host} is still in use."

    # nothing changed: no task, no action recorded, the host still holds it
    row = await server_row(cluster.pool, server_id)
    assert (row["task_state"], row["host"]) == (None, host)
    assert await actions_of(cluster.pool, server_id) == [("create", "success")]
    await admin.delete_and_wait(server_id)


async def test_members_may_not_evacuate_and_unknown_servers_and_hosts_are_404(
    admin: ComputeClient, member: ComputeClient, cluster: Cluster
) -> None:
    server_id = await server(member, "theirs")
    forbidden = await act(member, server_id, evacuate(onSharedStorage=False))
    assert forbidden.status == 403, forbidden
    assert forbidden.body["forbidden"]["code"] == 403

    unknown = await act(admin, str(uuid.uuid4()), evacuate(onSharedStorage=False))
    assert unknown.status == 404, unknown
    assert unknown.body["itemNotFound"]["message"] == "Instance could not be found."

    nowhere = await act(admin, server_id, evacuate(host="atlantis", onSharedStorage=False))
    assert nowhere.status == 404, nowhere
    assert nowhere.body["itemNotFound"]["message"] == "Compute host atlantis could not be found."

    for body, named in (
        (evacuate(onSharedStorage=False, force=True), "force"),
        (evacuate(onSharedStorage="sometimes"), "onSharedStorage"),
        (evacuate(host=""), "host"),
        ({"evacuate": "west"}, "Malformed"),
    ):
        bad = await act(admin, server_id, body)
        assert bad.status == 400, (body, bad)
        assert named in bad.body["badRequest"]["message"], (body, bad)
    await member.delete_and_wait(server_id)


# --- evacuating -----------------------------------------------------------------------------


async def test_evacuate_rebuilds_the_same_server_on_a_host_the_scheduler_picks(
    admin: ComputeClient, cluster: Cluster
) -> None:
    user_data = base64.b64encode(b"#!/bin/sh\necho evacuated\n").decode()
    server_id = await server(
        admin, "survivor", metadata={"role": "db"}, config_drive=True, user_data=user_data
    )
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    before = (await admin.get(f"/servers/{server_id}")).body["server"]
    usage_before = {h: await host_usage(cluster.pool, h) for h in HOSTS}

    async with dead(cluster, source):
        # the same refusal as from the API would come if the host were up; it is not now
        reply = await act(admin, server_id, evacuate(onSharedStorage=False))
        assert reply.status == 200, reply
        password = reply.body["adminPass"]
        assert set(reply.body) == {"adminPass"} and password

        after = await admin.wait_for_status(server_id, "ACTIVE")
        assert await cluster.host_of(server_id) == dest
        # the same server: id, addresses, metadata, image, flavor, name
        for member in ("id", "name", "addresses", "metadata", "image", "flavor", "tenant_id"):
            assert after[member] == before[member], member
        assert after["hostId"] != before["hostId"]
        rebuilt = cluster.drivers[dest].domains[domain_name(server_id)]
        assert rebuilt.admin_pass == password
        assert rebuilt.instance.metadata == {"role": "db"}
        assert rebuilt.instance.guest.config_drive
        assert rebuilt.instance.guest.user_data == user_data
        # the dead host's claim is given back, the destination's taken
        assert await host_usage(cluster.pool, source) == IDLE
        assert await host_usage(cluster.pool, dest) == tuple(
            a + b for a, b in zip(usage_before[dest], FLAVORS["1"], strict=True)
        )
        history = (await admin.get(f"/servers/{server_id}/os-instance-actions")).body
        latest = next(a for a in history["instanceActions"] if a["action"] == "evacuate")
        assert (latest["action"], latest["message"], latest["user_id"]) == (
            "evacuate",
            None,
            "admin",
        )
        assert await actions_of(cluster.pool, server_id) == [
            ("create", "success"),
            ("evacuate", "success"),
        ]
        # the dead host still has its copy, stopped in time: nobody told it anything
        stale = cluster.drivers[source].domains[domain_name(server_id)]
        boots = stale.boots

    # back: the host reports its stale copy, and is told to destroy it, never to run it
    await until(
        lambda: domain_name(server_id) not in cluster.drivers[source].domains,
        "the returning host destroys the evacuated server's domain",
    )
    await asyncio.sleep(0.3)  # whatever else its return causes has happened
    assert stale.boots == boots  # destroyed as it was, never started again
    row = await server_row(cluster.pool, server_id)
    assert (row["host"], row["vm_state"], row["task_state"]) == (dest, "active", None)
    assert domain_name(server_id) in cluster.drivers[dest].domains
    status = await cluster.pool.fetchval(
        "SELECT status FROM evacuations WHERE server_id = $1", uuid.UUID(server_id)
    )
    assert status == "source-cleaned"
    await admin.delete_and_wait(server_id)


async def test_a_named_host_is_used_and_it_may_not_be_the_dead_one(
    admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await server(admin, "pointed")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    async with dead(cluster, source):
        same = await act(admin, server_id, evacuate(host=source, onSharedStorage=False))
        assert same.status == 400, same
        assert same.body["badRequest"]["message"] == "The target host can't be the same one."
        chosen = await act(
            admin, server_id, evacuate(host=dest, onSharedStorage=True, adminPass="S3cret-pass")
        )
        assert chosen.status == 200, chosen
        assert chosen.body == {"adminPass": "S3cret-pass"}
        await admin.wait_for_status(server_id, "ACTIVE")
        assert await cluster.host_of(server_id) == dest
        assert cluster.drivers[dest].domains[domain_name(server_id)].admin_pass == "S3cret-pass"
    await until(lambda: not cluster.drivers[source].domains, "the stale copy is destroyed")
    await admin.delete_and_wait(server_id)


async def test_without_room_anywhere_the_server_stays_as_it_was_with_a_fault(
    admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await server(admin, "stranded")
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    async with dead(cluster, source):
        await hosts.set_enabled(cluster.pool, dest, False, reason="maintenance")
        try:
            reply = await act(admin, server_id, evacuate(onSharedStorage=False))
            assert reply.status == 200, reply

            async def evacuation_over() -> bool:
                return ("evacuate", "error") in await actions_of(cluster.pool, server_id)

            await until(evacuation_over, "the evacuation fails")
        finally:
            await hosts.set_enabled(cluster.pool, dest, True)
        row = await server_row(cluster.pool, server_id)
        assert (row["host"], row["vm_state"], row["task_state"]) == (source, "active", None)
        history = (await admin.get(f"/servers/{server_id}/os-instance-actions")).body
        failed = next(a for a in history["instanceActions"] if a["action"] == "evacuate")
        message = failed["message"]
        assert message.startswith(f"Evacuation from {source} failed: No valid host was found")
        assert await host_usage(cluster.pool, dest) == IDLE

        # room again: the operator tries again, and it works
        assert (await act(admin, server_id, evacuate())).status == 200
        await admin.wait_for_status(server_id, "ACTIVE")
        await until(
            lambda: domain_name(server_id) in cluster.drivers[dest].domains, "rebuilt on dest"
        )
        assert await cluster.host_of(server_id) == dest
    await until(lambda: not cluster.drivers[source].domains, "the stale copy is destroyed")
    await admin.delete_and_wait(server_id)


async def test_a_stopped_server_is_evacuated_and_comes_back_running(
    admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await server(admin, "sleeper")
    assert (await act(admin, server_id, {"os-stop": None})).status == 202
    await admin.wait_for_status(server_id, "SHUTOFF")
    source = await cluster.host_of(server_id)
    async with dead(cluster, source):
        assert (await act(admin, server_id, evacuate(onSharedStorage=False))).status == 200
        await admin.wait_for_status(server_id, "ACTIVE")
        assert await cluster.host_of(server_id) == cluster.other(source)
    await until(lambda: not cluster.drivers[source].domains, "the stale copy is destroyed")
    await admin.delete_and_wait(server_id)


async def test_other_actions_on_a_server_whose_host_is_down_are_refused_with_409(
    admin: ComputeClient, cluster: Cluster
) -> None:
    """Nothing would carry them out until the host returns (and it would then, after the
    reaper had told the user they failed); lock and os-resetState need no host."""
    server_id = await server(admin, "stranded")
    host = await cluster.host_of(server_id)
    async with dead(cluster, host):
        reply = await act(admin, server_id, {"reboot": {"type": "HARD"}})
        assert reply.status == 409
        assert reply.body["conflictingRequest"]["message"] == (
            f"Cannot 'reboot' instance while its host {host} is down."
        )
        assert (await act(admin, server_id, {"lock": None})).status == 202
        assert (await act(admin, server_id, {"unlock": None})).status == 202
        assert (await admin.get(f"/servers/{server_id}")).body["server"]["status"] == "ACTIVE"
    assert (await act(admin, server_id, {"reboot": {"type": "HARD"}})).status == 202
    await admin.wait_for_status(server_id, "ACTIVE")
    await admin.delete_and_wait(server_id)


async def test_a_server_deleted_while_its_evacuated_copy_waits_is_purged_too(
    admin: ComputeClient, cluster: Cluster
) -> None:
    server_id = await server(admin, "short-lived")
    source = await cluster.host_of(server_id)
    async with dead(cluster, source):
        assert (await act(admin, server_id, evacuate(onSharedStorage=False))).status == 200
        await admin.wait_for_status(server_id, "ACTIVE")
        await admin.delete_and_wait(server_id)
    await until(lambda: not cluster.drivers[source].domains, "the stale copy is destroyed")


async def test_python_novaclient_evacuates_as_nova_evacuate_does(
    admin: ComputeClient, cluster: Cluster
) -> None:
    """novaclient's ``servers.evacuate`` at microversion 2.0 (what ``nova evacuate`` sends:
    ``onSharedStorage`` true by default, no host unless named), unchanged."""
    server_id = await server(admin, "by-novaclient")
    source = await cluster.host_of(server_id)
    client = nova(cluster.system.url, admin.tenant, "admin")
    with pytest.raises(nova_exceptions.Conflict, match="still in use"):
        await asyncio.to_thread(client.servers.evacuate, server_id)
    async with dead(cluster, source):
        response, body = await asyncio.to_thread(
            client.servers.evacuate, server_id, password="From-novaclient1"
        )
        assert response.status_code == 200
        assert body == {"adminPass": "From-novaclient1"}
        await admin.wait_for_status(server_id, "ACTIVE")
        assert await cluster.host_of(server_id) == cluster.other(source)
    await until(lambda: not cluster.drivers[source].domains, "the stale copy is destroyed")
    await admin.delete_and_wait(server_id)


# --- stratus host evacuate ---------------------------------------------------------------------


@contextmanager
def operator_environment(
    monkeypatch: pytest.MonkeyPatch, cluster: Cluster, **more: str
) -> Iterator[None]:
    """``stratus`` pointed at the cluster's database (and ``more`` settings)."""
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)
    monkeypatch.setenv("STRATUS_DATABASE_URL", cluster.system.database_url)
    monkeypatch.setenv("STRATUS_MESSAGE_KEY", MESSAGE_KEY)
    for name, value in more.items():
        monkeypatch.setenv(name, value)
    yield


async def stratus(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[object, str]:
    """``stratus ARGS...``: its exit status (0, or SystemExit's code) and what it printed."""
    capsys.readouterr()
    status: object = 0
    try:
        await asyncio.to_thread(cli.main, list(argv))
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().out


async def test_the_cli_refuses_a_host_that_is_up_and_one_that_does_not_exist(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await require_rabbitmq()
    prefix = unique_prefix()
    try:
        with operator_environment(
            monkeypatch, cluster, STRATUS_AMQP_URL=url, STRATUS_AMQP_PREFIX=prefix
        ):
            status, _ = await stratus(capsys, "host", "evacuate", "east")
            assert isinstance(status, str), status
            assert status.startswith("stratus: host east is up"), status
            status, _ = await stratus(capsys, "host", "evacuate", "atlantis")
            assert status == "stratus: no compute host is named 'atlantis'"
            monkeypatch.delenv("STRATUS_AMQP_URL")
            status, _ = await stratus(capsys, "host", "evacuate", "east")
            assert isinstance(status, str) and "STRATUS_AMQP_URL" in status
    finally:
        await delete_topology(prefix, [])


@pytest.fixture
async def broker_cluster(tmp_path: Path) -> AsyncIterator[tuple[Cluster, str, str]]:
    """Three hosts on RabbitMQ, as a deployment runs (``stratus host evacuate`` reaches the
    conductors through the broker); the broker's URL and this cluster's prefix."""
    url = await require_rabbitmq()
    prefix = unique_prefix()
    names = ("alpha", "beta", "gamma")
    try:
        async with fake_cluster(tmp_path, names, amqp_url=url, amqp_prefix=prefix) as cluster:
            yield cluster, url, prefix
    finally:
        queues = ["conductor", "reports", "heartbeats", *(f"compute.{n}" for n in names)]
        await delete_topology(prefix, queues)


async def test_stratus_host_evacuate_rebuilds_every_server_of_the_dead_host(
    broker_cluster: tuple[Cluster, str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster, url, prefix = broker_cluster
    async with aiohttp.ClientSession() as session:
        api = ComputeClient(session, cluster.system.url, "evacuees", "alice")
        # pin every server on alpha: the others take none until it is dead
        for other in ("beta", "gamma"):
            await hosts.set_enabled(cluster.pool, other, False)
        ids = [await server(api, f"evacuee-{n}") for n in range(3)]
        for other in ("beta", "gamma"):
            await hosts.set_enabled(cluster.pool, other, True)
        assert {await cluster.host_of(i) for i in ids} == {"alpha"}
        before = {i: (await api.get(f"/servers/{i}")).body["server"] for i in ids}

        with operator_environment(
            monkeypatch, cluster, STRATUS_AMQP_URL=url, STRATUS_AMQP_PREFIX=prefix
        ):
            status, _ = await stratus(capsys, "host", "evacuate", "alpha")
            assert isinstance(status, str) and status.startswith("stratus: host alpha is up")
            await kill(cluster, "alpha")
            status, out = await stratus(capsys, "host", "evacuate", "alpha")
        assert status == 0, out
        lines = out.splitlines()
        assert lines[0] == "evacuating alpha"
        assert lines[-1] == "3 of 3 servers accepted"
        for server_id in ids:
            row = next(line for line in lines if line.startswith(server_id))
            assert row.split()[-1] in ("beta", "gamma"), out
            assert "rebuilding on" in row, out
            after = await api.wait_for_status(server_id, "ACTIVE")
            for member in ("id", "addresses", "metadata", "name"):
                assert after[member] == before[server_id][member]
            host = await cluster.host_of(server_id)
            assert host in ("beta", "gamma") and f"{host}" in row
            assert domain_name(server_id) in cluster.drivers[host].domains
        assert await host_usage(cluster.pool, "alpha") == IDLE
        operator = await cluster.pool.fetch(
            "SELECT user_id, result FROM actions WHERE action = 'evacuate'"
        )
        assert [tuple(r) for r in operator] == [("stratus-operator", "success")] * 3

        await revive(cluster, "alpha")
        await until(lambda: not cluster.drivers["alpha"].domains, "the stale copies go")
        for server_id in ids:
            await api.delete_and_wait(server_id)
