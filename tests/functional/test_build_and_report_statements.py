"""A build's and a report's few statements keep their guarantees: a build delivered again
resends its spawn and claims nothing twice (its placement reads nothing first), and a
report applied in one statement (one for the reports that come at once) is applied only if
it is the one its server awaits."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from conductor.build import Builds
from conductor.reports import Reports
from conductor.scheduler.scheduler import Scheduler
from shared.config import Settings
from shared.db import servers
from shared.db.hosts import Ratios
from shared.messages import CommandReport
from shared.states import VmState
from tests.support import ipam_builds
from tests.support.recorders import RecordingBus

HOST = "statements-host"
NETWORKS = "private=10.90.0.0/24"


@pytest.fixture
def pool(conductor_pool: asyncpg.Pool) -> asyncpg.Pool:
    return conductor_pool


def _builds(pool: asyncpg.Pool, bus: RecordingBus) -> Builds:
    settings = Settings.model_validate({"networks": NETWORKS})
    scheduler = Scheduler(ratios=Ratios(1.0, 1.0, 1.0), subset_size=1)
    return Builds(pool, bus, scheduler, settings)  # type: ignore[arg-type]


async def _scheduling(pool: asyncpg.Pool) -> uuid.UUID:
    """A server waiting for a host, as the gateway leaves it."""
    server_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await servers.insert(conn, ipam_builds.new_server(server_id))
    return server_id


async def _usage(pool: asyncpg.Pool) -> Any:
    return await pool.fetchval("SELECT ram_mb_used FROM compute_hosts WHERE name = $1", HOST)


async def _state(pool: asyncpg.Pool, server_id: uuid.UUID) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT vm_state, task_state, host FROM servers WHERE id = $1", server_id
    )
    return dict(row or {})


async def test_a_build_delivered_again_resends_its_spawn_and_claims_nothing_twice(
    pool: asyncpg.Pool,
) -> None:
    server_id = await _scheduling(pool)
    bus = RecordingBus()
    request = ipam_builds.build(server_id)
    await _builds(pool, bus).build(request)
    await _builds(pool, bus).build(request)  # the same build, delivered again
    assert [key.endswith(HOST) for key, _ in bus.sent] == [True, True]
    assert [type(sent).__name__ for _, sent in bus.sent] == ["SpawnServer", "SpawnServer"]
    assert await _usage(pool) == 512  # claimed once
    assert (
        await pool.fetchval("SELECT count(*) FROM fixed_ips WHERE server_id = $1", server_id) == 1
    )
    assert await _state(pool, server_id) == {
        "vm_state": "building",
        "task_state": "spawning",
        "host": HOST,
    }


async def test_a_build_of_a_server_gone_or_past_scheduling_is_dropped(pool: asyncpg.Pool) -> None:
    gone, failed = await _scheduling(pool), await _scheduling(pool)
    await pool.execute("UPDATE servers SET deleted_at = now() WHERE id = $1", gone)
    await pool.execute(
        "UPDATE servers SET vm_state = 'error', task_state = NULL WHERE id = $1", failed
    )
    bus = RecordingBus()
    for server_id in (gone, failed):
        await _builds(pool, bus).build(ipam_builds.build(server_id))
    assert bus.sent == []
    assert await _usage(pool) == 0
    assert await pool.fetchval("SELECT count(*) FROM fixed_ips") == 0


async def test_a_build_whose_server_asks_for_other_resources_claims_what_its_row_says(
    pool: asyncpg.Pool,
) -> None:
    """The server's row, which a delete gives back, decides what is claimed."""
    server_id = await _scheduling(pool)
    await pool.execute("UPDATE servers SET ram_mb = 1024 WHERE id = $1", server_id)
    bus = RecordingBus()
    await _builds(pool, bus).build(ipam_builds.build(server_id))
    assert len(bus.sent) == 1
    assert await _usage(pool) == 1024


async def _spawning_with_action(pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    """A server spawning on HOST and its pending create action."""
    (server_id,) = await ipam_builds.spawning(pool, HOST, 1)
    action_id = uuid.uuid4()
    await pool.execute(
        """INSERT INTO actions (id, request_id, server_id, action, tenant_id, user_id)
           VALUES ($1, 'req-statements', $2, 'create', $3, 'alice')""",
        action_id,
        server_id,
        ipam_builds.TENANT,
    )
    return server_id, action_id


def _spawned(server_id: uuid.UUID, action_id: uuid.UUID, host: str = HOST) -> CommandReport:
    return CommandReport(
        server_id=server_id,
        action_id=action_id,
        host=host,
        command="spawn_server",
        task_state="spawning",
        success=True,
        power_state=1,
    )


async def _action(pool: asyncpg.Pool, action_id: uuid.UUID) -> Any:
    return await pool.fetchval("SELECT result FROM actions WHERE id = $1", action_id)


async def test_a_spawn_report_completes_the_server_and_its_action_once(
    pool: asyncpg.Pool,
) -> None:
    server_id, action_id = await _spawning_with_action(pool)
    reports = Reports(pool, RecordingBus())  # type: ignore[arg-type]
    assert await reports.apply(_spawned(server_id, action_id))
    assert await _state(pool, server_id) == {
        "vm_state": "active",
        "task_state": None,
        "host": HOST,
    }
    assert await _action(pool, action_id) == "success"
    # delivered again: the server awaits nothing now
    assert not await reports.apply(_spawned(server_id, action_id))
    assert await _state(pool, server_id) == {"vm_state": "active", "task_state": None, "host": HOST}


async def test_a_spawn_report_that_is_not_awaited_changes_nothing(pool: asyncpg.Pool) -> None:
    server_id, action_id = await _spawning_with_action(pool)
    reports = Reports(pool, RecordingBus())  # type: ignore[arg-type]
    refused = [
        _spawned(server_id, action_id, host="another-host"),  # not the server's host
        _spawned(server_id, uuid.uuid4()),  # not its action
        _spawned(uuid.uuid4(), action_id),  # not a server
    ]
    for report in refused:
        assert not await reports.apply(report)
    await pool.execute("UPDATE actions SET result = 'error' WHERE id = $1", action_id)
    assert not await reports.apply(_spawned(server_id, action_id))
    assert await _state(pool, server_id) == {
        "vm_state": "building",
        "task_state": "spawning",
        "host": HOST,
    }
    await pool.execute("UPDATE actions SET result = 'pending' WHERE id = $1", action_id)
    await pool.execute("UPDATE servers SET deleted_at = now() WHERE id = $1", server_id)
    assert not await reports.apply(_spawned(server_id, action_id))
    assert await _action(pool, action_id) == "pending"


async def test_one_statement_applies_each_completion_only_if_awaited(pool: asyncpg.Pool) -> None:
    """The grouped statement judges each completion alone: one that is awaited is applied,
    beside others that are not (another host, another action, no such server), which
    change nothing."""
    (good, good_action), (other, other_action), (third, third_action) = [
        await _spawning_with_action(pool) for _ in range(3)
    ]

    def completion(
        server_id: uuid.UUID, action_id: uuid.UUID, host: str = HOST
    ) -> servers.Completion:
        return servers.Completion(
            server_id, "spawning", host, action_id, VmState.ACTIVE, power_state=1
        )

    async with pool.acquire() as conn:
        applied = await servers.complete_awaited_tasks(
            conn,
            [
                completion(other, other_action, host="another-host"),
                completion(good, good_action),
                completion(uuid.uuid4(), uuid.uuid4()),
                completion(third, uuid.uuid4()),
            ],
        )
    assert applied == [False, True, False, False]
    assert await _state(pool, good) == {"vm_state": "active", "task_state": None, "host": HOST}
    assert await _action(pool, good_action) == "success"
    assert await _state(pool, other) == {
        "vm_state": "building",
        "task_state": "spawning",
        "host": HOST,
    }
    assert await _action(pool, other_action) == "pending"
    assert (await _state(pool, third))["task_state"] == "spawning"
    assert await _action(pool, third_action) == "pending"


async def test_concurrent_reports_are_applied_in_groups_each_once(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A storm's reports, applied at once by one conductor, share statements; each report
    still gets its own answer: every awaited one applied, each exactly once when it came
    twice (a redelivery in the same burst), a refused one not at all."""
    statements: list[int] = []
    complete = servers.complete_awaited_tasks

    async def counted(conn: Any, completions: list[servers.Completion]) -> list[bool]:
        statements.append(len(completions))
        return await complete(conn, completions)

    monkeypatch.setattr(servers, "complete_awaited_tasks", counted)
    spawning = [await _spawning_with_action(pool) for _ in range(20)]
    reports = Reports(pool, RecordingBus())  # type: ignore[arg-type]
    burst = [_spawned(s, a) for s, a in spawning]
    burst += [_spawned(s, a) for s, a in spawning[:3]]  # delivered twice
    burst += [_spawned(s, a, host="another-host") for s, a in spawning[3:5]]
    answers = await asyncio.gather(*(reports.apply(report) for report in burst))

    assert answers[:20] == [True] * 20  # the first of each: no statement ran it twice
    assert answers[20:] == [False] * 5
    assert 1 < len(statements) < len(burst)  # grouped, the repeats in later statements
    for server_id, action_id in spawning:
        assert (await _state(pool, server_id))["vm_state"] == "active"
        assert await _action(pool, action_id) == "success"
