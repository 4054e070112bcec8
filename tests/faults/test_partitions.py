"""Network partitions (issue 17, part 5), on the fault suite's cluster.

* An agent cut off from the broker for longer than the heartbeat window: its host is
  marked down, no build lands on it, an action on one of its servers ends with a fault (it
  is neither answered 5xx nor left pending), a delete of one is done without it, its other
  servers are started nowhere else; once the partition heals the agent reconnects, its host
  comes back up, its hypervisor agrees with the database again (the deleted server's domain
  destroyed) and it carries out actions again.
* A gateway cut off from PostgreSQL: every request that needs the database is answered 503
  with a v2 fault (JSON, and XML when asked) within a bounded time while the other gateway
  serves on; once healed, the same process (no restart) serves again.

The partition is a proxy in the test process that drops every byte (tests/faults/partition.py):
the cluster sends h3's broker connections and api-2's database connections through one.
Every wait is a bounded poll for a state; the one sleep makes the partition last its length.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from xml.etree import ElementTree

import aiohttp
import asyncpg
import pytest

from shared.config import Settings
from tests.conftest import IMAGE
from tests.faults import checks
from tests.faults.checks import Outcome
from tests.faults.cluster import (
    GATEWAYS,
    HOSTS,
    PARTITIONED_AGENT,
    PARTITIONED_GATEWAY,
    FaultCluster,
    role_env,
    wait_hosts_up,
)
from tests.faults.conftest import FaultEnv

pytestmark = pytest.mark.faults

T = TypeVar("T")

#: The heartbeat window the conductors judge hosts by (STRATUS_HOST_DOWN_AFTER_S).
HOST_DOWN_AFTER_S = float(role_env("", "", "", Path())["STRATUS_HOST_DOWN_AFTER_S"])
#: How long the agent stays cut off: well past the window, so its silence is judged.
AGENT_CUT_S = HOST_DOWN_AFTER_S * 3 + 5
#: How long the gateway waits for PostgreSQL before giving up (STRATUS_API_DB_TIMEOUT_S,
#: the default: the suite does not set it).
DB_TIMEOUT_S: float = Settings.model_fields["api_db_timeout_s"].default
#: A request that needs the database, across a partition, waits for its statement and then
#: for the statement's cancellation, each bounded by DB_TIMEOUT_S (or for a connection,
#: bounded the same way); the rest is slack for a loaded machine.
ANSWERED_WITHIN_S = 2 * DB_TIMEOUT_S + 15
#: Builds and actions that the cluster finishes in a second or two, with room for the
#: other tests sharing the machine.
SETTLES_WITHIN_S = 60.0
_JSON = "application/json"
_XML = "application/xml"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]
    elapsed_s: float

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """One project's requests to one gateway, with a bounded wait for every answer."""

    def __init__(self, session: aiohttp.ClientSession, gateway: str, tenant: str) -> None:
        self.session = session
        self.gateway = gateway
        self.tenant = tenant

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        accept: str = _JSON,
        timeout_s: float = 60.0,
    ) -> Answer:
        started = time.monotonic()
        async with self.session.request(
            method,
            f"{self.gateway}/v2/{self.tenant}{path}",
            json=body,
            headers={"X-Auth-Token": f"partition:{self.tenant}", "Accept": accept},
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            content = await response.read()
            return Answer(
                response.status, content, dict(response.headers), time.monotonic() - started
            )

    async def create(self) -> str:
        name = f"p{uuid.uuid4().hex[:12]}"
        body = {"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1"}}
        answer = await self.request("POST", "/servers", body)
        assert answer.status == 202, (answer.status, answer.body)
        return str(answer.json()["server"]["id"])

    async def action(self, server_id: str, body: dict[str, Any]) -> Answer:
        return await self.request("POST", f"/servers/{server_id}/action", body)

    async def show(self, server_id: str) -> dict[str, Any] | None:
        answer = await self.request("GET", f"/servers/{server_id}")
        if answer.status == 404:
            return None
        assert answer.status == 200, (answer.status, answer.body)
        server: dict[str, Any] = answer.json()["server"]
        return server

    async def status(self, server_id: str) -> str:
        server = await self.show(server_id)
        return "DELETED" if server is None else str(server["status"])


async def until(what: str, probe: Callable[[], Awaitable[T | None]], timeout_s: float) -> T:
    """``probe``'s first answer that is not None (or False), polled for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        await asyncio.sleep(0.3)


@asynccontextmanager
async def database(cluster: FaultCluster) -> AsyncIterator[asyncpg.Connection]:
    """The test's own connection to PostgreSQL: never through a partition."""
    conn = await asyncpg.connect(cluster.database_url, timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


async def host_of(conn: asyncpg.Connection, server_id: str) -> str | None:
    host: str | None = await conn.fetchval(
        "SELECT host FROM servers WHERE id = $1", uuid.UUID(server_id)
    )
    return host


async def host_up(conn: asyncpg.Connection, host: str) -> bool:
    return bool(await conn.fetchval("SELECT up FROM compute_hosts WHERE name = $1", host))


async def all_show(api: Api, server_ids: list[str], status: str) -> bool:
    """Every server shows ``status``; an ERROR fails the test at once (nothing here
    should end in one unless the test says so)."""
    shown = [await api.status(sid) for sid in server_ids]
    assert "ERROR" not in shown, dict(zip(server_ids, shown, strict=True))
    return all(s == status for s in shown)


async def build_until_held(api: Api, conn: asyncpg.Connection, host: str, want: int) -> list[str]:
    """Boot servers (ACTIVE) until ``host`` holds ``want`` of them (the scheduler picks at
    random among the best hosts, so a few rounds do); the ids of those it holds."""
    built: list[str] = []
    for _ in range(8):
        batch = [await api.create() for _ in range(4)]
        await until(
            "the servers are ACTIVE",
            functools.partial(all_show, api, batch, "ACTIVE"),
            SETTLES_WITHIN_S,
        )
        built += batch
        held = [sid for sid in built if await host_of(conn, sid) == host]
        if len(held) >= want:
            return held
    raise AssertionError(f"{host} never got {want} of {len(built)} servers")


async def delete_all(api: Api, conn: asyncpg.Connection) -> None:
    """Leave the cluster as it was for the next test (best effort: the verdicts are in)."""
    for row in await conn.fetch(
        "SELECT id FROM servers WHERE tenant_id = $1 AND deleted_at IS NULL", api.tenant
    ):
        await api.request("DELETE", f"/servers/{row['id']}")


# --- an agent cut off from the broker ------------------------------------------------------


async def test_agent_cut_off_from_the_broker(fault_env: FaultEnv) -> None:
    cluster, watch = fault_env.cluster, fault_env.watch
    agent = PARTITIONED_AGENT
    others = {h for h in HOSTS if h != agent}
    proxy = cluster.partitions[agent]
    await cluster.wait_healthy()
    tenant = f"partition-agent-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as session, database(cluster) as conn:
        # api-1: the gateway whose database is never cut
        api = Api(session, cluster.gateways[GATEWAYS.index("api-1")], tenant)
        held = await build_until_held(api, conn, agent, want=3)
        acted_on, deleted, kept = held[0], held[1], held[2:]

        proxy.cut()
        cut_at = time.monotonic()
        try:
            await until(
                f"{agent} is marked down",
                lambda: _not(host_up(conn, agent)),
                HOST_DOWN_AFTER_S + 30,
            )
            for host in others:
                assert await host_up(conn, host), f"{host} went down with {agent}'s partition"

            # builds go elsewhere, and finish
            new = [await api.create() for _ in range(4)]
            await until("builds are ACTIVE", lambda: all_show(api, new, "ACTIVE"), SETTLES_WITHIN_S)
            placed = {sid: await host_of(conn, sid) for sid in new}
            assert agent not in placed.values(), f"built on a host that is down: {placed}"

            # an action on one of its servers: not a 5xx, and it ends (with a fault)
            answer = await api.action(acted_on, {"reboot": {"type": "SOFT"}})
            await _ends_with_fault(api, conn, acted_on, answer, agent)

            # a delete: done without the host, which cannot be asked
            answer = await api.request("DELETE", f"/servers/{deleted}")
            assert answer.status == 204, (answer.status, answer.body)
            assert await api.status(deleted) == "DELETED"

            # its servers stay its own: not rebuilt elsewhere, not moved in the database
            since = datetime.now(UTC)
            await watch.reports_since(since, others, timeout_s=15)
            for host in others:
                observed_at, domains = watch.latest[host]
                assert observed_at > since, f"no report from {host} during the partition"
                assert not domains & set(held), f"{host} runs servers of {agent}"
            for sid in [acted_on, *kept]:
                assert await host_of(conn, sid) == agent

            # the partition lasts its length whatever the checks above took
            await asyncio.sleep(max(0.0, AGENT_CUT_S - (time.monotonic() - cut_at)))
        finally:
            proxy.restore()

        # the partition broke the agent's connection (it was heartbeating through it): what
        # follows is its reconnection, not a connection that merely resumed
        assert proxy.reset_on_restore >= 1, "the agent's broker connection survived the cut"
        # healed: the agent reconnects, its heartbeats are heard again
        await wait_hosts_up(cluster.database_url, (agent,), timeout_s=90)
        healed = datetime.now(UTC)
        await watch.reports_since(healed, {agent}, timeout_s=30)
        assert watch.latest[agent][0] > healed, f"{agent} reports nothing since it came back"
        await until(
            f"{agent} destroys the domain of the server deleted while it was away",
            lambda: _reported_without(watch, agent, healed, deleted),
            30,
        )
        # it reconciles: its hypervisor and the database agree, everywhere (the deleted
        # server's domain destroyed, no server on two hosts, none missing)
        outcome = Outcome("partition-agent")
        await checks.check_domains(conn, watch, tenant, outcome)
        assert outcome.domains == "ok", "\n".join(outcome.problems)
        for sid in kept:
            assert await api.status(sid) == "ACTIVE"
        # and it serves again
        answer = await api.action(kept[0], {"pause": None})
        assert answer.status == 202, (answer.status, answer.body)
        await until(
            "the paused server is PAUSED",
            lambda: all_show(api, [kept[0]], "PAUSED"),
            SETTLES_WITHIN_S,
        )
        await delete_all(api, conn)


async def _not(probe: Awaitable[bool]) -> bool:
    return not await probe


async def _reported_without(
    watch: checks.DomainWatch, host: str, since: datetime, server_id: str
) -> bool:
    """``host`` reported all its domains after ``since``, and ``server_id``'s was not one."""
    observed_at, domains = watch.latest[host]
    return observed_at > since and server_id not in domains


async def _ends_with_fault(
    api: Api, conn: asyncpg.Connection, server_id: str, answer: Answer, host: str
) -> None:
    """An action on a server whose host is down is refused (409 with a fault), or taken and
    then failed: the server in ERROR with a fault naming the host, its action closed as an
    error, never pending and never 5xx."""
    assert answer.status < 500, (answer.status, answer.body)
    if answer.status == 409:
        assert "conflictingRequest" in answer.json(), answer.body
        return
    assert answer.status == 202, (answer.status, answer.body)
    # the conductors' reaper abandons a task on a silent host once it is past the window
    server = await until(
        "the server is in ERROR",
        lambda: _in_error(api, server_id),
        HOST_DOWN_AFTER_S * 2 + 30,
    )
    assert host in server.get("fault", {}).get("message", ""), server
    results = await conn.fetch(
        "SELECT result FROM actions WHERE server_id = $1 AND action = 'reboot'",
        uuid.UUID(server_id),
    )
    assert [r["result"] for r in results] == ["error"], results


async def _in_error(api: Api, server_id: str) -> dict[str, Any] | None:
    server = await api.show(server_id)
    assert server is not None, "the server was deleted"
    return server if server["status"] == "ERROR" else None


# --- a gateway cut off from PostgreSQL -----------------------------------------------------


async def test_gateway_cut_off_from_the_database(fault_env: FaultEnv) -> None:
    cluster = fault_env.cluster
    gateway = PARTITIONED_GATEWAY
    proxy = cluster.partitions[gateway]
    process = cluster.roles[gateway].process
    assert process is not None
    await cluster.wait_healthy()
    tenant = f"partition-db-{uuid.uuid4().hex[:6]}"
    async with aiohttp.ClientSession() as session:
        cut_off = Api(session, cluster.gateways[GATEWAYS.index(gateway)], tenant)
        other = Api(session, cluster.gateways[GATEWAYS.index("api-1")], tenant)
        server_id = await cut_off.create()  # it works before
        await until(
            "the server is ACTIVE",
            lambda: all_show(cut_off, [server_id], "ACTIVE"),
            SETTLES_WITHIN_S,
        )

        proxy.cut()
        try:
            # more requests at once than the pool has connections to lose
            asked = [
                *(("GET", "/servers", _JSON) for _ in range(6)),
                ("GET", f"/servers/{server_id}", _JSON),
                ("GET", "/servers/detail", _XML),
                ("GET", f"/servers/{server_id}", _XML),
                ("GET", "/flavors", _XML),
            ]
            answers = await asyncio.gather(
                *(_answered(cut_off, method, path, accept) for method, path, accept in asked)
            )
            for (_, path, accept), answer in zip(asked, answers, strict=True):
                _assert_unavailable(path, accept, answer)
            # the partition is api-2's alone
            assert (await other.request("GET", f"/servers/{server_id}")).status == 200
        finally:
            proxy.restore()

        # healed: the same process serves again, reads and writes
        await until(
            f"{gateway} serves again",
            lambda: _serves(cut_off, server_id),
            ANSWERED_WITHIN_S * 2,
        )
        assert cluster.roles[gateway].process is process and process.poll() is None
        answer = await cut_off.action(server_id, {"reboot": {"type": "SOFT"}})
        assert answer.status == 202, (answer.status, answer.body)
        await until(
            "the rebooted server is ACTIVE",
            lambda: all_show(cut_off, [server_id], "ACTIVE"),
            SETTLES_WITHIN_S,
        )
        answer = await cut_off.request("DELETE", f"/servers/{server_id}")
        assert answer.status == 204, (answer.status, answer.body)


async def _answered(api: Api, method: str, path: str, accept: str) -> Answer:
    """The answer to a request across the partition; failing the test when it takes
    longer than the bound by far (the gateway hangs on the database)."""
    patience_s = ANSWERED_WITHIN_S * 3
    try:
        return await api.request(method, path, accept=accept, timeout_s=patience_s)
    except TimeoutError:
        raise AssertionError(f"{method} {path} ({accept}): no answer in {patience_s:g} s") from None


def _assert_unavailable(path: str, accept: str, answer: Answer) -> None:
    """503 with Retry-After and a v2 serviceUnavailable fault in the asked format, within
    the bound."""
    what = f"GET {path} ({accept}): {answer.status} after {answer.elapsed_s:.1f} s"
    assert answer.status == 503, f"{what}: {answer.body[:300]!r}"
    assert answer.elapsed_s < ANSWERED_WITHIN_S, what
    assert answer.headers.get("Retry-After"), what
    assert answer.headers.get("Content-Type", "").startswith(accept), what
    if accept == _JSON:
        fault = answer.json()["serviceUnavailable"]
        assert fault["code"] == 503 and fault["message"], what
    else:
        root = ElementTree.fromstring(answer.body)
        assert root.tag.rpartition("}")[2] == "serviceUnavailable", f"{what}: {root.tag}"
        assert root.get("code") == "503", what
        message = next((c for c in root if c.tag.rpartition("}")[2] == "message"), None)
        assert message is not None and message.text, what


async def _serves(api: Api, server_id: str) -> bool:
    """The gateway answers a read from the database (a 503 means not yet)."""
    try:
        answer = await api.request("GET", f"/servers/{server_id}", timeout_s=ANSWERED_WITHIN_S)
    except (TimeoutError, aiohttp.ClientError):
        return False
    assert answer.status in (200, 503), (answer.status, answer.body)
    return answer.status == 200
