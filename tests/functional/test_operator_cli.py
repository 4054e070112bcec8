"""The operator's commands (stratus/admin.py, wired in stratus/cli.py) run as an operator runs
them, ``stratus ...`` on STRATUS_DATABASE_URL, against a database of their own: what they print
and what they change. Also the progress of the long ones (``db upgrade``, ``image import``).
"""

from __future__ import annotations

import asyncio
import io
import re
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from shared.db import flavors, migrate
from stratus import cli
from stratus.progress import CopyProgress
from tests.support.databases import fresh_database
from tests.support.rabbitmq import delete_topology, require_rabbitmq, unique_prefix


@dataclass(frozen=True)
class Run:
    status: int | str | None
    out: str
    err: str

    def lines(self) -> list[str]:
        return self.out.splitlines()

    def line_of(self, first_word: str) -> str:
        """The output line that starts with ``first_word`` (a row of a table)."""
        found = [line for line in self.lines() if line.split()[:1] == [first_word]]
        assert len(found) == 1, self.out
        return found[0]


#: ``stratus ARGS...``
Stratus = Callable[..., Awaitable[Run]]


@pytest.fixture
async def database(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A fresh database that ``stratus`` is pointed at, with allocation ratios of 1 (so that
    what fits is plain arithmetic) and no broker."""
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)  # pytest's stay
    for ratio in ("CPU", "RAM", "DISK"):
        monkeypatch.setenv(f"STRATUS_{ratio}_ALLOCATION_RATIO", "1.0")
    monkeypatch.delenv("STRATUS_AMQP_URL", raising=False)
    async with fresh_database() as url:
        monkeypatch.setenv("STRATUS_DATABASE_URL", url)
        yield url


@pytest.fixture
def stratus(capsys: pytest.CaptureFixture[str]) -> Stratus:
    """``stratus ARGS...`` as the command line runs it: its exit status, stdout and stderr."""

    async def run(*argv: str) -> Run:
        capsys.readouterr()
        status: int | str | None = 0
        try:
            await asyncio.to_thread(cli.main, list(argv))
        except SystemExit as exc:
            status = exc.code
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return run


async def connect(url: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(url)
    return conn


async def add_host(
    conn: asyncpg.Connection,
    name: str,
    vcpus: int = 8,
    ram_mb: int = 8192,
    disk_gb: int = 100,
    *,
    alive: bool = True,
    enabled: bool = True,
) -> None:
    """A compute host as heartbeats register it (a dead one last heard from an hour ago)."""
    await conn.execute(
        """INSERT INTO compute_hosts (name, hypervisor_type, hypervisor_uri, vcpus, ram_mb,
                                      disk_gb, last_heartbeat, up, enabled)
           VALUES ($1, 'QEMU', 'qemu:///system', $2, $3, $4,
                   now() - make_interval(secs => $5), $6, $7)""",
        name,
        vcpus,
        ram_mb,
        disk_gb,
        0.0 if alive else 3600.0,
        alive,
        enabled,
    )


async def add_server(
    conn: asyncpg.Connection,
    host: str | None,
    name: str,
    vcpus: int = 1,
    ram_mb: int = 512,
    disk_gb: int = 1,
    *,
    project: str = "demo",
    vm_state: str = "active",
    task_state: str | None = None,
    deleted: bool = False,
) -> uuid.UUID:
    """A server holding its resources on ``host`` (the host's usage counts it, as a claim
    would have)."""
    server_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO servers (id, tenant_id, user_id, name, image_id, flavor_id, vcpus,
                                ram_mb, disk_gb, vm_state, task_state, host, deleted_at)
           VALUES ($1, $2, 'u', $3, $4, '1', $5, $6, $7, $8, $9, $10,
                   CASE WHEN $11 THEN now() END)""",
        server_id,
        project,
        name,
        uuid.uuid4(),
        vcpus,
        ram_mb,
        disk_gb,
        vm_state,
        task_state,
        host,
        deleted,
    )
    if host is not None and not deleted:
        await conn.execute(
            """UPDATE compute_hosts SET vcpus_used = vcpus_used + $2,
                      ram_mb_used = ram_mb_used + $3, disk_gb_used = disk_gb_used + $4
                WHERE name = $1""",
            host,
            vcpus,
            ram_mb,
            disk_gb,
        )
    return server_id


# --- stratus host ----------------------------------------------------------------------------


async def test_host_list_shows_state_scheduling_and_usage_and_disable_keeps_its_reason(
    database: str, stratus: Stratus
) -> None:
    conn = await connect(database)
    try:
        await add_host(conn, "hv-a", 8, 8192, 100)
        await add_host(conn, "hv-dead", 4, 4096, 50, alive=False)
        await add_server(conn, "hv-a", "web", 2, 2048, 20)
    finally:
        await conn.close()

    listed = await stratus("host", "list")
    assert listed.status == 0
    assert listed.lines()[0].split() == [
        "HOST",
        "STATE",
        "SCHEDULING",
        "VCPUS",
        "RAM",
        "MB",
        "DISK",
        "GB",
        "HEARTBEAT",
    ]
    assert listed.line_of("hv-a").split()[:6] == [
        "hv-a",
        "up",
        "enabled",
        "2/8",
        "2048/8192",
        "20/100",
    ]
    assert listed.line_of("hv-dead").split()[:3] == ["hv-dead", "down", "enabled"]
    assert "1 h ago" in listed.line_of("hv-dead")
    assert listed.lines()[-1].endswith("capacity × cpu 1.0, ram 1.0, disk 1.0)")

    disabled = await stratus("host", "disable", "hv-a", "--reason", "kernel upgrade")
    assert disabled.status == 0 and "host hv-a disabled (kernel upgrade)" in disabled.out
    assert "disabled (kernel upgrade)" in (await stratus("host", "list")).line_of("hv-a")
    conn = await connect(database)
    try:
        row = await conn.fetchrow(
            "SELECT enabled, disabled_reason FROM compute_hosts WHERE name = 'hv-a'"
        )
        assert row is not None and tuple(row) == (False, "kernel upgrade")
        assert (await stratus("host", "enable", "hv-a")).status == 0
        row = await conn.fetchrow(
            "SELECT enabled, disabled_reason FROM compute_hosts WHERE name = 'hv-a'"
        )
        assert row is not None and tuple(row) == (True, None)
    finally:
        await conn.close()

    for verb in ("enable", "disable", "evacuate-plan"):
        refused = await stratus("host", verb, "nope")
        assert refused.status == "stratus: no compute host is named 'nope'"


async def test_evacuate_plan_places_each_server_by_the_scheduler_rules_without_claiming(
    database: str, stratus: Stratus
) -> None:
    conn = await connect(database)
    try:
        await add_host(conn, "src", 16, 32768, 500)
        await add_host(conn, "hv-b", 8, 10240, 200)
        await add_host(conn, "hv-c", 4, 6144, 100)
        await add_host(conn, "hv-dead", 64, 131072, 5000, alive=False)
        await add_host(conn, "hv-off", 64, 131072, 5000, enabled=False)
        ids = {
            "huge": await add_server(conn, "src", "huge", 8, 20000, 100),
            "big": await add_server(conn, "src", "big", 4, 8192, 80),
            "mid": await add_server(conn, "src", "mid", 2, 4096, 40),
            "small": await add_server(conn, "src", "small", 1, 2048, 20),
        }
        await add_server(conn, "src", "gone", 1, 512, 1, deleted=True)
        before = await conn.fetch("SELECT * FROM compute_hosts ORDER BY name")

        plan = await stratus("host", "evacuate-plan", "src")

        assert await conn.fetch("SELECT * FROM compute_hosts ORDER BY name") == before
        temporary = await conn.fetchval("SELECT count(*) FROM pg_class WHERE relpersistence = 't'")
        assert temporary == 0
    finally:
        await conn.close()
    assert plan.status == 0, plan
    # largest first; each placement counts against the next; never the dead or disabled host
    destinations = {name: plan.line_of(str(ids[name])).split(maxsplit=6)[-1] for name in ids}
    assert destinations == {
        "huge": "(no valid host)",
        "big": "hv-b",
        "mid": "hv-c",
        "small": "hv-b",
    }
    rows = [plan.out.index(str(ids[name])) for name in ("huge", "big", "mid", "small")]
    assert rows == sorted(rows)
    assert plan.lines()[-1] == "3 of 4 servers have somewhere to go"
    # the same question again gives the same answer
    assert (await stratus("host", "evacuate-plan", "src")).out == plan.out
    assert (await stratus("host", "evacuate-plan", "hv-b")).out.startswith(
        "host hv-b holds no servers"
    )


# --- stratus flavor --------------------------------------------------------------------------


async def test_flavors_are_created_listed_and_deleted_the_way_the_api_reads_them(
    database: str, stratus: Stratus
) -> None:
    created = await stratus(
        "flavor", "create", "--name", "m1.custom", "--ram", "3072", "--disk", "30", "--vcpus", "3"
    )
    assert created.status == 0, created
    flavor_id = re.fullmatch(r"flavor (\S+) \(m1\.custom\) created: .*\n", created.out)
    assert flavor_id is not None
    assert uuid.UUID(flavor_id.group(1))
    fixed = await stratus(
        "flavor", "create", "--name", "m1.fixed", "--ram", "1024", "--disk", "0", "--vcpus", "1",
        "--id", "42", "--public",
    )  # fmt: skip
    assert fixed.out.startswith("flavor 42 (m1.fixed) created: 1024 MB RAM, 0 GB disk, 1 vCPUs")

    conn = await connect(database)
    try:
        await add_host(conn, "hv-a")
        await add_server(conn, "hv-a", "uses-42")
        await conn.execute("UPDATE servers SET flavor_id = '42'")
        listed = await stratus("flavor", "list")
        assert listed.line_of("42").split() == ["42", "m1.fixed", "1024", "0", "1", "1"]
        assert listed.line_of("1").split() == ["1", "m1.tiny", "512", "1", "1", "0"]
        assert "m1.custom" in listed.out

        duplicate = await stratus(
            "flavor", "create", "--name", "m1.fixed", "--ram", "1", "--disk", "1", "--vcpus", "1"
        )
        assert isinstance(duplicate.status, str) and "named 'm1.fixed' exists" in duplicate.status
        for bad in (["--ram", "0"], ["--vcpus", "-1"], ["--disk", "-1"]):
            values = {"--ram": "1", "--disk": "1", "--vcpus": "1", bad[0]: bad[1]}
            argv = [item for pair in values.items() for item in pair]
            refused = await stratus("flavor", "create", "--name", "bad", *argv)
            assert isinstance(refused.status, str) and "must be" in refused.status
        private = await stratus(
            "flavor", "create", "--name", "p", "--ram", "1", "--disk", "1", "--vcpus", "1",
            "--private",
        )  # fmt: skip
        assert isinstance(private.status, str) and "every flavor is public" in private.status

        deleted = await stratus("flavor", "delete", "m1.fixed")  # by name
        assert deleted.status == 0 and deleted.out.startswith("flavor 42 (m1.fixed) deleted")
        assert await flavors.get(conn, "42") is None  # what the API reads
        assert await conn.fetchval("SELECT deleted_at IS NOT NULL FROM flavors WHERE id = '42'")
        assert "m1.fixed" not in (await stratus("flavor", "list")).out
        again = await stratus("flavor", "delete", "42")
        assert again.status == "stratus: no flavor has the id or name '42'"

        # the name is free again; the deleted flavor's id is not
        reused = await stratus(
            "flavor", "create", "--name", "m1.fixed", "--ram", "2048", "--disk", "1",
            "--vcpus", "2", "--id", "43",
        )  # fmt: skip
        assert reused.status == 0, reused
        same_id = await stratus(
            "flavor", "create", "--name", "other", "--ram", "1", "--disk", "1", "--vcpus", "1",
            "--id", "42",
        )  # fmt: skip
        assert isinstance(same_id.status, str) and "'42'" in same_id.status
    finally:
        await conn.close()


# --- stratus quota ---------------------------------------------------------------------------


async def test_quota_show_counts_the_projects_live_servers_against_the_settings(
    database: str,
    stratus: Stratus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATUS_QUOTA_INSTANCES", "5")
    monkeypatch.setenv("STRATUS_QUOTA_CORES", "-1")
    monkeypatch.setenv("STRATUS_QUOTA_RAM_MB", "4096")
    conn = await connect(database)
    try:
        await add_host(conn, "hv-a")
        await add_server(conn, "hv-a", "a", 1, 1024, project="p1")
        await add_server(conn, None, "b", 2, 1024, project="p1", vm_state="building")
        await add_server(conn, "hv-a", "gone", 4, 1024, project="p1", deleted=True)
        await add_server(conn, "hv-a", "theirs", 4, 1024, project="p2")
    finally:
        await conn.close()

    shown = await stratus("quota", "show", "--project", "p1")
    assert shown.status == 0
    assert shown.lines()[0].startswith("project p1")
    assert shown.line_of("instances").split() == ["instances", "maxTotalInstances", "5", "2", "3"]
    assert shown.line_of("cores").split() == ["cores", "maxTotalCores", "unlimited", "3", "-"]
    assert shown.line_of("ram").split()[2:] == ["maxTotalRAMSize", "4096", "2048", "2048"]
    assert "maxServerMeta" in shown.line_of("metadata")
    empty = await stratus("quota", "show", "--project", "nobody")
    assert empty.line_of("instances").split()[-2:] == ["0", "5"]


# --- stratus status --------------------------------------------------------------------------


async def seed_for_status(url: str) -> None:
    conn = await connect(url)
    try:
        await add_host(conn, "hv-a")
        await add_host(conn, "hv-b", enabled=False)
        await add_host(conn, "hv-dead", alive=False)
        await add_server(conn, "hv-a", "ok-1")
        await add_server(conn, "hv-a", "ok-2")
        building = await add_server(conn, "hv-a", "new", vm_state="building", task_state="spawning")
        await add_server(conn, "hv-a", "broken", vm_state="error")
        await add_server(conn, "hv-a", "gone", deleted=True)
        await conn.execute(
            """INSERT INTO actions (id, request_id, server_id, action, tenant_id, user_id,
                                    started_at)
               VALUES ($1, 'req-1', $2, 'create', 'demo', 'u', now() - interval '3 minutes')""",
            uuid.uuid4(),
            building,
        )
    finally:
        await conn.close()


async def test_status_summarises_hosts_servers_and_pending_actions(
    database: str, stratus: Stratus
) -> None:
    await seed_for_status(database)
    report = await stratus("status")
    assert report.status == 0, report
    assert report.line_of("database").startswith("database   reachable at postgresql://")
    assert report.line_of("hosts") == "hosts      2 up, 1 down, 1 disabled (down: hv-dead)"
    assert report.line_of("servers") == "servers    4: ACTIVE 2, BUILD 1, ERROR 1"
    assert report.line_of("actions") == "actions    1 pending, the oldest 3 min old"
    assert report.line_of("broker").startswith("broker     not configured")


async def test_status_fails_when_the_broker_or_the_database_cannot_be_reached(
    database: str,
    stratus: Stratus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATUS_AMQP_URL", "amqp://guest:secret@127.0.0.1:1/")
    report = await stratus("status")
    assert report.status == 1
    assert report.line_of("broker").startswith("broker     unreachable at amqp://127.0.0.1:1/")
    assert "secret" not in report.out
    assert report.line_of("database").startswith("database   reachable")

    monkeypatch.setenv("STRATUS_DATABASE_URL", "postgresql://nobody:secret@127.0.0.1:1/none")
    report = await stratus("status")
    assert report.status == 1
    assert report.line_of("database").startswith("database   unreachable at postgresql://")
    assert "secret" not in report.out
    assert "stratus: PostgreSQL is unreachable" in str((await stratus("host", "list")).status)


async def test_status_counts_the_dead_lettered_messages(
    database: str,
    stratus: Stratus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = await require_rabbitmq()
    prefix = unique_prefix()
    monkeypatch.setenv("STRATUS_AMQP_URL", url)
    monkeypatch.setenv("STRATUS_AMQP_PREFIX", prefix)
    try:
        before = await stratus("status")  # nobody declared the dead-letter queue yet
        assert before.line_of("dead") == f"dead       0 dead-lettered messages in {prefix}.dead"
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(f"{prefix}.dead", durable=True)
            for n in range(2):
                message = aio_pika.Message(f"dead {n}".encode())
                await channel.default_exchange.publish(message, routing_key=f"{prefix}.dead")
        report = await stratus("status")
        assert report.status == 0, report
        assert report.line_of("broker").startswith("broker     reachable at amqp://")
        assert report.line_of("dead") == f"dead       2 dead-lettered messages in {prefix}.dead"
    finally:
        await delete_topology(prefix, [])


# --- progress of the long commands -----------------------------------------------------------


async def test_db_upgrade_prints_a_line_per_migration_it_applies(
    stratus: Stratus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "setup_logging", lambda *args, **kwargs: None)
    shipped = [name for _, name, _ in migrate.available_migrations()]
    async with fresh_database(migrated=False) as url:
        monkeypatch.setenv("STRATUS_DATABASE_URL", url)
        first = await stratus("db", "upgrade")
        second = await stratus("db", "upgrade")
    applied = [re.fullmatch(r"applied (\S+) \(\d+\.\d\d s\)", line) for line in first.lines()]
    assert [m.group(1) for m in applied[:-1] if m] == shipped
    assert first.lines()[-1] == f"database is up to date ({len(shipped)} migrations applied)"
    assert second.lines() == ["database is up to date (0 migrations applied)"]


def qcow2(path: Path, size: int) -> Path:
    """A standalone qcow2 header padded to ``size`` bytes (enough for the importer)."""
    header = b"QFI\xfb" + struct.pack(">IQI", 3, 0, 0)
    path.write_bytes(header + b"\0" * (size - len(header)))
    return path


async def test_image_import_reports_its_copy_every_tenth_when_not_on_a_terminal(
    database: str,
    stratus: Stratus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATUS_IMAGE_STORE_DIR", str(tmp_path / "store"))
    disk = qcow2(tmp_path / "big.qcow2", 5 * 1024 * 1024 // 2)  # 2.5 MiB: three 1 MiB chunks
    run = await stratus("image", "import", "--name", "big", "--file", str(disk))
    assert run.status == 0, run
    assert "imported" in run.out and "copying" not in run.out  # stdout keeps the result
    percents = [int(m.group(1)) for m in re.finditer(r"copying big\.qcow2: +(\d+)%", run.err)]
    assert percents == [0, 40, 80, 100]
    assert run.err.splitlines()[-1].endswith("(2.5 MiB of 2.5 MiB)")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_copy_progress_rewrites_one_line_on_a_terminal() -> None:
    terminal = _Terminal()
    progress = CopyProgress(terminal, interval_s=0.0)
    for done in (0, 512, 1024):
        progress("disk.qcow2", done, 1024)
    drawn = terminal.getvalue()
    assert drawn.count("\r\x1b[K") == 3 and drawn.count("\n") == 1 and drawn.endswith("\n")
    assert "copying disk.qcow2:  50% (512 B of 1.0 KiB)" in drawn
