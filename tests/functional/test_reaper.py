"""No server stays stuck: the conductor's reaper ends tasks that ran past their deadline or
whose host stopped heartbeating, and what agents report (a starting agent's inventory, the
periodic report of every server) reconciles the database, through the probes it causes.

Each test has a system of its own (two fake hosts, its own database) whose periodic reaper is
off (``reaper_interval_s=0``): the tests age a task or a heartbeat in the database, as time
would, and run one round of the reaper themselves, so nothing here waits for a clock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from compute_agent.virt.fake import FakeDriver
from conductor.reaper import Reaper
from shared import bus as bus_mod
from shared.messages import SpawnServer
from shared.states import PowerState
from tests.conftest import IMAGE
from tests.support.actions import act, active_server, host_usage, server_row
from tests.support.client import ComputeClient
from tests.support.cluster import Cluster, fake_cluster
from tests.support.sealing import sealed

HOSTS = ("alpha", "beta")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with fake_cluster(
        tmp_path, HOSTS, reaper_interval_s=0, heartbeat_interval_s=3600, task_deadline_s=600
    ) as cluster:
        yield cluster


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[ComputeClient]:
    async with aiohttp.ClientSession() as session:
        yield ComputeClient(session, cluster.system.url, "reaped", "alice")


def reaper(cluster: Cluster) -> Reaper:
    assert cluster.system.conductor is not None
    return cluster.system.conductor.reaper


async def age_task(cluster: Cluster, server_id: str, seconds: float) -> None:
    """As if the server's task had started ``seconds`` ago."""
    await cluster.pool.execute(
        """UPDATE servers SET task_started_at = now() - make_interval(secs => $2)
            WHERE id = $1""",
        uuid.UUID(server_id),
        seconds,
    )


async def silence(cluster: Cluster, host: str, seconds: float) -> None:
    """As if ``host`` had sent no heartbeat for ``seconds``."""
    await cluster.pool.execute(
        """UPDATE compute_hosts SET last_heartbeat = now() - make_interval(secs => $2)
            WHERE name = $1""",
        host,
        seconds,
    )


def heard_a_whole_window(cluster: Cluster) -> None:
    """As if the conductor had been hearing heartbeats for a whole window: one that has
    just started judges no host on its silence (conductor/hearing.py)."""
    hearing = cluster.system.conductor.hearing  # type: ignore[union-attr]
    hearing.missed(at=hearing.clock() - hearing.window_s)


async def wait_for_task(cluster: Cluster, server_id: str, task: str) -> None:
    for _ in range(200):
        if (await server_row(cluster.pool, server_id))["task_state"] == task:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"server {server_id} never reached task {task}")


async def held_build(cluster: Cluster, api: ComputeClient, name: str) -> tuple[str, str]:
    """A server whose spawn its host holds (its task stays ``spawning``): its id and host."""
    for driver in cluster.drivers.values():
        driver.hold("spawn")
    reply = await api.create_server(name, IMAGE)
    server_id: str = reply.body["server"]["id"]
    await wait_for_task(cluster, server_id, "spawning")
    return server_id, await cluster.host_of(server_id)


async def fault_and_actions(api: ComputeClient, server_id: str) -> tuple[str, list[str]]:
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    history = (await api.get(f"/servers/{server_id}/os-instance-actions")).body
    events = [a["action"] + ":" + (a["message"] or "ok") for a in history["instanceActions"]]
    return server.get("fault", {}).get("message", ""), events


async def test_a_task_is_stamped_when_it_starts_and_cleared_when_it_ends(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "stamped", IMAGE)
    assert (await server_row(cluster.pool, server_id))["task_started_at"] is None
    driver = await cluster.driver_of(server_id)
    release = driver.hold("reboot")
    assert (await act(api, server_id, {"reboot": {"type": "SOFT"}})).status == 202
    row = await server_row(cluster.pool, server_id)
    assert row["task_state"] == "rebooting"
    assert row["task_started_at"] is not None
    release.set()
    await api.wait_for_status(server_id, "ACTIVE")
    assert (await server_row(cluster.pool, server_id))["task_started_at"] is None


async def test_a_task_past_its_deadline_ends_in_error_with_a_fault(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "slow", IMAGE)
    driver = await cluster.driver_of(server_id)
    release = driver.hold("reboot")
    assert (await act(api, server_id, {"reboot": {"type": "SOFT"}})).status == 202
    await age_task(cluster, server_id, 599)
    assert await reaper(cluster).reap() == 0  # not yet
    await age_task(cluster, server_id, 601)
    assert await reaper(cluster).reap() == 1

    row = await server_row(cluster.pool, server_id)
    assert (row["vm_state"], row["task_state"]) == ("error", None)
    fault, events = await fault_and_actions(api, server_id)
    assert fault == "task rebooting abandoned: it ran past its deadline of 600 s"
    assert events[0].startswith("reboot:task rebooting abandoned")

    # the host finishes after all: its late report is refused, the server stays in ERROR
    release.set()
    await asyncio.sleep(0.3)
    assert (await server_row(cluster.pool, server_id))["vm_state"] == "error"
    # and an ERROR server is the user's to delete, as always
    await api.delete_and_wait(server_id)


async def test_deadlines_are_per_task(tmp_path: Path) -> None:
    async with (
        fake_cluster(
            tmp_path,
            HOSTS,
            reaper_interval_s=0,
            heartbeat_interval_s=3600,
            task_deadlines={"rebooting": 5},
        ) as cluster,
        aiohttp.ClientSession() as session,
    ):
        api = ComputeClient(session, cluster.system.url, "reaped", "alice")
        server_id = await active_server(api, "quick", IMAGE)
        (await cluster.driver_of(server_id)).hold("reboot")
        assert (await act(api, server_id, {"reboot": {"type": "SOFT"}})).status == 202
        await age_task(cluster, server_id, 6)
        assert await reaper(cluster).reap() == 1
        fault, _ = await fault_and_actions(api, server_id)
        assert fault == "task rebooting abandoned: it ran past its deadline of 5 s"


async def test_a_build_on_a_host_that_stopped_heartbeating_ends_in_error(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id, host = await held_build(cluster, api, "orphan")
    before = await host_usage(cluster.pool, host)
    assert before != (0, 0, 0)

    heard_a_whole_window(cluster)
    await silence(cluster, host, 10)  # down, but the build only just started: not yet
    assert await reaper(cluster).reap() == 0
    await silence(cluster, host, 60)
    await age_task(cluster, server_id, 45)
    assert await reaper(cluster).reap() == 1

    server = (await api.get(f"/servers/{server_id}")).body["server"]
    assert server["status"] == "ERROR"
    assert server["fault"]["message"] == (
        f"task spawning abandoned: host {host} stopped heartbeating"
    )
    # the server still holds its claim on the host until it is deleted, as any ERROR server
    assert await host_usage(cluster.pool, host) == before
    # deleting it while its host is down finishes in the database and gives the claim back
    await api.delete_and_wait(server_id)
    assert await host_usage(cluster.pool, host) == (0, 0, 0)


async def test_a_task_whose_command_never_left_its_gateway_is_taken_back(
    cluster: Cluster, api: ComputeClient
) -> None:
    """A gateway killed between its commit and the publish leaves a task no command will
    finish, and a client with no answer: past the deadline the task is taken back, as the
    gateway would have done had the broker refused the command; the server is not harmed."""
    server_id = await active_server(api, "unsent", IMAGE)
    sid = uuid.UUID(server_id)
    async with cluster.pool.acquire() as conn, conn.transaction():  # the gateway's commit
        await conn.execute("UPDATE servers SET task_state = 'pausing' WHERE id = $1", sid)
        await conn.execute(
            """INSERT INTO actions (id, request_id, server_id, action, tenant_id, user_id, sent)
               VALUES ($1, 'req-dead-gateway', $2, 'pause', 'reaped', 'alice', false)""",
            uuid.uuid4(),
            sid,
        )
    await age_task(cluster, server_id, 601)
    assert await reaper(cluster).reap() == 1

    server = (await api.get(f"/servers/{server_id}")).body["server"]
    assert (server["status"], server.get("fault")) == ("ACTIVE", None)
    _, events = await fault_and_actions(api, server_id)
    assert events[0] == (
        "pause:task pausing taken back: the gateway that accepted it stopped before sending"
        " its command"
    )
    assert (await cluster.driver_of(server_id)).domains[f"instance-{server_id}"].power == (
        PowerState.RUNNING
    )


async def test_a_build_whose_gateway_died_before_marking_it_sent_is_taken_back(
    cluster: Cluster, api: ComputeClient
) -> None:
    """The gateway may have died after the publish and before the mark: the build may be
    on its way after all, so the server is deleted the way one on a dead host is, its claim
    given back and any domain its host builds purged by reconciliation."""
    server_id, host = await held_build(cluster, api, "unmarked")
    await cluster.pool.execute(
        "UPDATE actions SET sent = false WHERE server_id = $1", uuid.UUID(server_id)
    )
    await age_task(cluster, server_id, 601)
    assert await reaper(cluster).reap() == 1
    row = await server_row(cluster.pool, server_id)
    assert row["deleted_at"] is not None
    assert await host_usage(cluster.pool, host) == (0, 0, 0)


async def test_a_task_whose_command_was_sent_and_never_finished_ends_in_error(
    cluster: Cluster, api: ComputeClient
) -> None:
    """The gateway marks what the broker took (else this would be taken back, not ERROR)."""
    server_id = await active_server(api, "sent", IMAGE)
    (await cluster.driver_of(server_id)).hold("pause")
    assert (await act(api, server_id, {"pause": None})).status == 202
    await wait_for_task(cluster, server_id, "pausing")
    sent = await cluster.pool.fetchval(
        "SELECT sent FROM actions WHERE server_id = $1 AND action = 'pause'", uuid.UUID(server_id)
    )
    assert sent is True
    await age_task(cluster, server_id, 601)
    assert await reaper(cluster).reap() == 1
    fault, _ = await fault_and_actions(api, server_id)
    assert fault == "task pausing abandoned: it ran past its deadline of 600 s"


async def test_silence_while_the_conductor_could_not_hear_condemns_no_host_or_task(
    cluster: Cluster, api: ComputeClient
) -> None:
    """A broker (or database) outage silences every host at once: until the conductor has
    heard for a whole window after it, no host is marked down and no task is abandoned on
    its host's silence; then both happen as before. A deadline still applies meanwhile."""
    conductor = cluster.system.conductor
    assert conductor is not None
    server_id, host = await held_build(cluster, api, "unheard")
    await silence(cluster, host, 60)
    await age_task(cluster, server_id, 45)

    conductor.hearing.missed()  # as if the broker had just been unreachable
    assert await reaper(cluster).reap() == 0
    await conductor.mark_dead_hosts()
    assert await cluster.pool.fetchval("SELECT up FROM compute_hosts WHERE name = $1", host)
    assert (await server_row(cluster.pool, server_id))["task_state"] == "spawning"

    # a whole window heard since: the silence is the host's own
    heard_a_whole_window(cluster)
    await conductor.mark_dead_hosts()
    assert not await cluster.pool.fetchval("SELECT up FROM compute_hosts WHERE name = $1", host)
    assert await reaper(cluster).reap() == 1
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    assert (
        server["fault"]["message"] == f"task spawning abandoned: host {host} stopped heartbeating"
    )
    await api.delete_and_wait(server_id)


async def test_a_deadline_applies_while_the_conductor_could_not_hear(
    cluster: Cluster, api: ComputeClient
) -> None:
    conductor = cluster.system.conductor
    assert conductor is not None
    server_id, host = await held_build(cluster, api, "late")
    await silence(cluster, host, 60)
    await age_task(cluster, server_id, 601)  # past the fixture's 600 s deadline
    conductor.hearing.missed()
    assert await reaper(cluster).reap() == 1
    server = (await api.get(f"/servers/{server_id}")).body["server"]
    assert server["fault"]["message"] == (
        "task spawning abandoned: it ran past its deadline of 600 s"
    )
    await api.delete_and_wait(server_id)


async def test_a_stuck_delete_is_sent_again_to_a_live_host(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "undead", IMAGE)
    driver = await cluster.driver_of(server_id)
    release = driver.hold("destroy")
    assert (await api.delete(f"/servers/{server_id}")).status == 204
    await wait_for_task(cluster, server_id, "deleting")
    await age_task(cluster, server_id, 601)
    assert await reaper(cluster).reap() == 1
    # a new deadline for the second try; the server is not in ERROR
    row = await server_row(cluster.pool, server_id)
    assert row["task_state"] == "deleting"
    assert row["vm_state"] == "active"
    release.set()
    await api.wait_for_status(server_id, "DELETED")
    assert f"instance-{server_id}" not in driver.domains


async def test_a_stuck_delete_on_a_dead_host_finishes_in_the_database(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "gone", IMAGE)
    host = await cluster.host_of(server_id)
    (await cluster.driver_of(server_id)).hold("destroy")
    assert (await api.delete(f"/servers/{server_id}")).status == 204
    await wait_for_task(cluster, server_id, "deleting")
    heard_a_whole_window(cluster)
    await silence(cluster, host, 60)
    await age_task(cluster, server_id, 45)
    assert await reaper(cluster).reap() == 1
    row = await server_row(cluster.pool, server_id)
    assert row["deleted_at"] is not None
    assert await host_usage(cluster.pool, host) == (0, 0, 0)
    delete = await cluster.pool.fetchrow(
        "SELECT result, message FROM actions WHERE server_id = $1 AND action = 'delete'",
        uuid.UUID(server_id),
    )
    assert delete is not None
    assert tuple(delete) == (
        "success",
        f"finished in the database alone: host {host} stopped heartbeating",
    )


async def test_conductors_reaping_at_once_resolve_each_server_once(
    cluster: Cluster, api: ComputeClient
) -> None:
    ids = [await active_server(api, f"herd-{n}", IMAGE) for n in range(6)]
    for driver in cluster.drivers.values():
        driver.hold("pause")
    for server_id in ids:
        assert (await act(api, server_id, {"pause": None})).status == 202
        await wait_for_task(cluster, server_id, "pausing")
        await age_task(cluster, server_id, 601)
    mine = reaper(cluster)
    other = Reaper(
        cluster.pool,
        cluster.system.bus,  # type: ignore[arg-type]
        interval_s=0,
        default_deadline_s=600,
        deadlines={},
        host_down_after_s=30,
    )
    resolved = await asyncio.gather(mine.reap(), other.reap(), mine.reap(), other.reap())
    assert sum(resolved) == len(ids)
    faults = await cluster.pool.fetch(
        "SELECT server_id, count(*) AS n FROM server_faults GROUP BY server_id"
    )
    assert sorted((str(r["server_id"]), r["n"]) for r in faults) == sorted(
        (server_id, 1) for server_id in ids
    )


async def test_a_resize_past_its_deadline_gives_back_the_claim_its_destination_never_used(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "stretch", IMAGE)
    source = await cluster.host_of(server_id)
    dest = cluster.other(source)
    cluster.drivers[source].hold("migrate_disk_and_power_off")
    assert (await act(api, server_id, {"resize": {"flavorRef": "2"}})).status == 202
    await wait_for_task(cluster, server_id, "resize_migrating")
    await age_task(cluster, server_id, 3601)  # resize_migrating has an hour by default
    assert await reaper(cluster).reap() == 1
    row = await server_row(cluster.pool, server_id)
    assert (row["vm_state"], row["task_state"]) == ("error", None)
    assert await host_usage(cluster.pool, dest) == (0, 0, 0)
    status = await cluster.pool.fetchval(
        "SELECT status FROM migrations WHERE server_id = $1", uuid.UUID(server_id)
    )
    assert status == "error"


async def wait_for_error(cluster: Cluster, server_id: str, what: str) -> None:
    async def in_error() -> bool:
        return bool((await server_row(cluster.pool, server_id))["vm_state"] == "error")

    await wait_until(in_error, what)


async def wait_for_no_domain(driver: FakeDriver, server_id: str, what: str) -> None:
    async def destroyed() -> bool:
        return f"instance-{server_id}" not in driver.domains

    await wait_until(destroyed, what)


async def wait_until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(200):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(what)


async def test_a_starting_agent_reports_its_servers_and_missing_ones_go_to_error(
    cluster: Cluster, api: ComputeClient
) -> None:
    kept = await active_server(api, "kept", IMAGE)
    lost = await active_server(api, "lost", IMAGE)
    host = await cluster.host_of(lost)
    driver = cluster.drivers[host]
    driver.domains.pop(f"instance-{lost}")  # the host lost it while its agent was away
    agent = next(a for a in cluster.system.agents if a.host == host)
    await agent.report_inventory()  # as when it starts

    await wait_for_error(cluster, lost, "the missing server never went to ERROR")
    fault, _ = await fault_and_actions(api, lost)
    assert fault == f"host {host} has no domain for this server (found when its agent started)"
    assert (await server_row(cluster.pool, kept))["vm_state"] == "active"


async def test_a_starting_agent_destroys_domains_of_servers_deleted_while_it_was_away(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "ghost", IMAGE)
    host = await cluster.host_of(server_id)
    driver = cluster.drivers[host]
    await silence(cluster, host, 3600)  # down: the delete finishes in the database alone
    await api.delete_and_wait(server_id)
    assert driver.domains[f"instance-{server_id}"].power == PowerState.RUNNING
    agent = next(a for a in cluster.system.agents if a.host == host)
    await agent.heartbeat()
    await agent.report_inventory()

    await wait_for_no_domain(driver, server_id, "the deleted server's domain was never destroyed")


async def test_a_starting_agent_missing_a_server_in_an_in_place_task_abandons_it(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "pausing-lost", IMAGE)
    host = await cluster.host_of(server_id)
    driver = cluster.drivers[host]
    driver.hold("pause")
    assert (await act(api, server_id, {"pause": None})).status == 202
    await wait_for_task(cluster, server_id, "pausing")
    driver.domains.pop(f"instance-{server_id}")
    agent = next(a for a in cluster.system.agents if a.host == host)
    await agent.report_inventory()  # as when it starts

    await wait_for_error(cluster, server_id, "the server in a task without its domain stayed")
    row = await server_row(cluster.pool, server_id)
    assert row["task_state"] is None
    _, events = await fault_and_actions(api, server_id)
    assert events[0] == (
        f"pause:host {host} has no domain for this server (found when its agent started)"
    )


async def test_a_power_report_naming_a_deleted_server_has_its_domain_destroyed(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "lingering", IMAGE)
    host = await cluster.host_of(server_id)
    driver = cluster.drivers[host]
    await silence(cluster, host, 3600)  # looks dead: the delete finishes in the database
    await api.delete_and_wait(server_id)
    agent = next(a for a in cluster.system.agents if a.host == host)
    await agent.power_states.report_all()  # the periodic report: the host is alive after all

    await wait_for_no_domain(driver, server_id, "the deleted server's domain was never destroyed")


async def test_a_late_duplicate_build_of_a_deleted_server_is_undone(
    cluster: Cluster, api: ComputeClient, caplog: pytest.LogCaptureFixture
) -> None:
    server_id = await active_server(api, "phoenix", IMAGE)
    host = await cluster.host_of(server_id)
    driver = cluster.drivers[host]
    domain = f"instance-{server_id}"
    instance = driver.domains[domain].instance
    await api.delete_and_wait(server_id)
    assert domain not in driver.domains
    # the build's message delivered again, late: the agent builds the server anew, its
    # report is refused (the server is deleted), and the conductor has the domain destroyed
    assert cluster.system.bus is not None
    action_id = uuid.uuid4()
    await cluster.system.bus.publish(
        bus_mod.compute_queue(host),
        SpawnServer(
            server_id=uuid.UUID(server_id),
            action_id=action_id,
            instance=instance,
            admin_pass=sealed(
                SpawnServer, "x", server_id=uuid.UUID(server_id), action_id=action_id
            ),
        ),
    )

    async def destroyed_again() -> bool:
        purged = f"destroyed the domain of deleted server {server_id}" in caplog.text
        return purged and domain not in driver.domains

    with caplog.at_level(logging.WARNING, logger="compute_agent.service"):
        await wait_until(destroyed_again, "the duplicate build's domain was never destroyed")


async def test_a_periodic_report_without_a_settled_server_puts_it_in_error(
    cluster: Cluster, api: ComputeClient
) -> None:
    server_id = await active_server(api, "vanished", IMAGE)
    host = await cluster.host_of(server_id)
    cluster.drivers[host].domains.pop(f"instance-{server_id}")  # gone behind our back
    agent = next(a for a in cluster.system.agents if a.host == host)
    # the server changed a moment ago, yet no waiting: the report makes the conductor probe
    # the host, which looks after the probe was sent, hence after the server last changed
    await agent.power_states.report_all()

    await wait_for_error(cluster, server_id, "the server its host lost never went to ERROR")
    fault, _ = await fault_and_actions(api, server_id)
    assert fault == f"host {host} has no domain for this server (found missing by a periodic check)"
