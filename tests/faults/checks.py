"""What must hold once the system has settled after a fault.

* every accepted request is accounted for: it finished (its action succeeded and, for a
  server's last accepted request, the server shows what it promised), or it failed with a
  fault the fault explains (its action closed with an error, or the server is in ERROR with
  a fault, and the message names a host the fault struck: that host died with the server
  on it); anything else is *lost*, and an ERROR no struck host explains is counted apart
  (*unexplained ERROR*: a reaper cleaning up after work the system dropped is not an
  excuse). A request that got no answer (*indeterminate*,
  tests/faults/load.py) may or may not have been taken, so the server may also show the
  promise of any indeterminate request sent after its last accepted one (``reachable``);
  an indeterminate create whose server turned up was taken after all, and is judged as if
  accepted;
* no server of the fault's project is in a task once the system has settled, and the
  settle window is longer than every deadline in force (*stuck*);
* no answer was a server error (a 5xx other than a 503 fault: tests/faults/load.py);
* each host's usage columns equal what its live servers hold plus the claims of the
  migrations under way (DB only; compared with the mismatch before the fault, so one
  fault's damage is not charged to the next);
* nothing that matters was dead-lettered: a command or report in ``<prefix>.dead`` is work
  given up (heartbeats and power state reports are repeated anyway, so they may be);
* the domains each agent's hypervisor holds match the database: seen through the power
  state reports every agent sends of all its domains (``PowerStateReport``), the only view
  into a test:/// hypervisor, which lives inside its agent's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import aio_pika
import aio_pika.abc
import asyncpg

from shared import messages
from shared.bus import REPORTS
from shared.states import v2_status
from tests.faults.cluster import TASK_DEADLINE_S
from tests.faults.load import Ledger, Sent

#: The reaper runs every second: a task may outlive its deadline by about that much.
STUCK_AFTER_S = TASK_DEADLINE_S + 5.0
#: How long the system gets to finish every task once the load stops: longer than every
#: deadline in force (the cluster gives every task the same one), so a task still running
#: after it is stuck, and one the system dropped has met the reaper.
SETTLE_S = STUCK_AFTER_S + 5.0
_ON_HYPERVISOR = ("active", "paused", "stopped", "suspended", "resized")


@dataclass
class Outcome:
    """One row of the suite's table, and the details behind its failures."""

    fault: str
    accepted: int = 0
    completed: int = 0
    failed_with_fault: int = 0
    lost: int = 0
    stuck: int = 0
    refused: int = 0
    #: requests that got no answer: they may or may not have been taken
    indeterminate: int = 0
    #: failed with a fault that no host the fault struck explains
    unexplained: int = 0
    #: answers that were server errors (tests/faults/load.py)
    server_errors: int = 0
    usage: str = "ok"
    dead: int = 0
    domains: str = "ok"
    #: the hosts whose agent the fault killed: an ERROR naming one of them is explained
    struck_hosts: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    #: what the fault did (which process, what it interrupted), for the log
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.stuck
            or self.unexplained
            or self.server_errors
            or self.dead
            or self.usage != "ok"
            or self.domains != "ok"
        )

    def explains(self, message: str) -> bool:
        """Whether ``message`` (a fault's, or a failed action's) blames a struck host."""
        return any(f"host {host} " in f"{message} " for host in self.struck_hosts)


# --- settling ----------------------------------------------------------------------------


async def settle(conn: asyncpg.Connection, tenant: str, timeout_s: float = SETTLE_S) -> float:
    """Wait until no server of ``tenant`` runs a task, at most ``timeout_s`` (longer than
    any deadline): returns how long it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        busy = await conn.fetchval(
            """SELECT count(*) FROM servers WHERE tenant_id = $1 AND deleted_at IS NULL
                 AND task_state IS NOT NULL""",
            tenant,
        )
        if busy == 0:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - start


# --- accounting --------------------------------------------------------------------------


async def account(conn: asyncpg.Connection, ledger: Ledger, tenant: str, outcome: Outcome) -> None:
    """Sort every accepted request (and every unanswered create whose server turned up)
    into completed, failed with a fault, or lost, judging each server by its history."""
    histories: dict[str, list[Sent]] = defaultdict(list)
    for sent in await _found_creates(conn, tenant, ledger.sent):
        if sent.server_id:
            histories[sent.server_id].append(sent)
    ids = [uuid.UUID(sid) for sid in histories]
    seen = {
        str(r["id"]): Seen(
            r["vm_state"],
            r["task_state"],
            deleted=r["deleted_at"] is not None,
            faulted=r["faulted"],
        )
        for r in await conn.fetch(
            """SELECT s.id, s.vm_state, s.task_state, s.deleted_at,
                      EXISTS (SELECT 1 FROM server_faults f WHERE f.server_id = s.id) AS faulted
                 FROM servers s WHERE s.id = ANY($1::uuid[])""",
            ids,
        )
    }
    actions = await conn.fetch(
        "SELECT request_id, result, message FROM actions WHERE server_id = ANY($1::uuid[])", ids
    )
    results = {r["request_id"]: r["result"] for r in actions}
    why = {r["request_id"]: r["message"] or "" for r in actions}
    faults = await _fault_messages(conn, ids)
    outcome.accepted = len(ledger.accepted)
    outcome.indeterminate = len(ledger.indeterminate)
    outcome.refused = ledger.refused
    outcome.server_errors = len(ledger.server_errors)
    outcome.problems += [f"server error: {e}" for e in ledger.server_errors]
    for server_id, history in histories.items():
        for request, verdict in judge(history, seen.get(server_id), results):
            if verdict == "completed":
                outcome.completed += 1
            elif verdict != "failed":
                outcome.lost += 1
                outcome.problems.append(f"lost {request.action} of {server_id}: {verdict}")
            elif outcome.explains(message := why.get(request.request_id) or faults[server_id]):
                outcome.failed_with_fault += 1
            else:
                outcome.unexplained += 1
                outcome.problems.append(
                    f"unexplained ERROR of {request.action} of {server_id}: {message!r}"
                )


async def _fault_messages(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[str, str]:
    """Each server's latest fault message ("" when it has none)."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (server_id) server_id, message FROM server_faults
            WHERE server_id = ANY($1::uuid[]) ORDER BY server_id, id DESC""",
        ids,
    )
    found = {str(r["server_id"]): r["message"] or "" for r in rows}
    return defaultdict(str, found)


async def _found_creates(conn: asyncpg.Connection, tenant: str, sent: list[Sent]) -> list[Sent]:
    """``sent`` with each unanswered create whose server exists (not deleted) replaced by
    an accepted one of that server: the server is the answer that never came, and it owes
    what any accepted create owes (to settle, ACTIVE or failed with a fault)."""
    names = [s.name for s in sent if s.action == "create" and not s.answered]
    found = {
        r["name"]: (str(r["id"]), r["request_id"])
        for r in await conn.fetch(
            """SELECT s.name, s.id, a.request_id FROM servers s
                 JOIN actions a ON a.server_id = s.id AND a.action = 'create'
                WHERE s.tenant_id = $1 AND s.name = ANY($2::text[]) AND s.deleted_at IS NULL""",
            tenant,
            names,
        )
    }
    return [
        replace(s, answered=True, server_id=found[s.name][0], request_id=found[s.name][1])
        if not s.answered and s.name in found
        else s
        for s in sent
    ]


@dataclass(frozen=True)
class Seen:
    """What the database shows of a server once the system has settled."""

    vm_state: str
    task_state: str | None = None
    deleted: bool = False
    #: the server has a recorded fault
    faulted: bool = False

    @property
    def status(self) -> str:
        return "DELETED" if self.deleted else str(v2_status(self.vm_state, self.task_state))


def reachable(history: Sequence[Sent]) -> set[str]:
    """The statuses a server may end in after ``history`` (its requests, in the order they
    were sent): an accepted request's promise replaces all before it, an indeterminate one's
    may or may not have been kept, so it adds to them. ``DELETED`` stands for no server,
    which is where an unanswered create starts from."""
    possible = {"DELETED"}
    for request in history:
        possible = {request.expect} if request.answered else possible | {request.expect}
    return possible


def judge(
    history: Sequence[Sent], seen: Seen | None, results: Mapping[str, str]
) -> list[tuple[Sent, str]]:
    """Each accepted request of one server's ``history`` with its verdict: ``completed``,
    ``failed``, or why it is lost. The final status is charged to the last accepted request
    (the earlier ones were evidently done, or the later would not have been accepted); it
    must be one the history can reach. ``results``: each action's result by request id."""
    accepted = [request for request in history if request.answered]
    verdicts = [(request, _verdict(request, seen, results)) for request in accepted]
    if verdicts and verdicts[-1][1] == "completed":
        assert seen is not None
        if seen.status not in (possible := reachable(history)):
            promised = " or ".join(sorted(possible))
            verdicts[-1] = (accepted[-1], f"server shows {seen.status}, expected {promised}")
    return verdicts


def _verdict(request: Sent, seen: Seen | None, results: Mapping[str, str]) -> str:
    """``completed``, ``failed``, or why the request is lost, leaving out the final status."""
    if seen is None:
        return "no such server"
    if seen.deleted:
        return "completed"
    result = results.get(request.request_id)
    if result == "error" or (seen.vm_state == "error" and seen.faulted):
        return "failed"
    if seen.vm_state == "error":
        return "server in ERROR without a fault"
    if result is None:
        return "no action recorded for the request"
    if result == "pending":
        return f"action still pending (vm {seen.vm_state}, task {seen.task_state})"
    return "completed"


async def count_stuck(conn: asyncpg.Connection, tenant: str, outcome: Outcome) -> None:
    """Every server still in a task once the settle window (longer than any deadline) is
    over: nothing ends it now."""
    rows = await conn.fetch(
        """SELECT id, vm_state, task_state, host, now() - updated_at AS age FROM servers
            WHERE tenant_id = $1 AND deleted_at IS NULL AND task_state IS NOT NULL""",
        tenant,
    )
    outcome.stuck = len(rows)
    outcome.problems += [
        f"stuck {r['id']} on {r['host']}: {r['vm_state']}/{r['task_state']} for {r['age']}"
        for r in rows
    ]


# --- host usage --------------------------------------------------------------------------

_USAGE = """
WITH held AS (
    SELECT host, vcpus, ram_mb, disk_gb FROM servers
     WHERE deleted_at IS NULL AND host IS NOT NULL
    UNION ALL
    SELECT CASE m.held WHEN 'source' THEN m.source_host ELSE m.dest_host END,
           (c ->> 'vcpus')::int, (c ->> 'ram_mb')::int, (c ->> 'disk_gb')::int
      FROM migrations m,
           LATERAL (SELECT CASE m.held WHEN 'source' THEN m.instance -> 'flavor'
                                       ELSE m.new_flavor END AS c) claim
     WHERE m.held IS NOT NULL
)
SELECT h.name,
       h.vcpus_used - coalesce(sum(held.vcpus), 0) AS vcpus,
       h.ram_mb_used - coalesce(sum(held.ram_mb), 0) AS ram_mb,
       h.disk_gb_used - coalesce(sum(held.disk_gb), 0) AS disk_gb
  FROM compute_hosts h LEFT JOIN held ON held.host = h.name
 GROUP BY h.name, h.vcpus_used, h.ram_mb_used, h.disk_gb_used
 ORDER BY h.name
"""

Usage = dict[str, tuple[int, int, int]]


async def usage_mismatch(conn: asyncpg.Connection) -> Usage:
    """Per host: recorded usage minus what servers and migrations hold (0s when exact)."""
    return {r["name"]: (r["vcpus"], r["ram_mb"], r["disk_gb"]) for r in await conn.fetch(_USAGE)}


def compare_usage(before: Usage, after: Usage, outcome: Outcome) -> None:
    changed = {
        host: delta
        for host, delta in after.items()
        if delta != before.get(host, (0, 0, 0)) and delta != (0, 0, 0)
    }
    if changed:
        outcome.usage = "MISMATCH"
        outcome.problems += [
            f"usage of {host} is off by (vcpus, ram_mb, disk_gb) {delta}"
            for host, delta in changed.items()
        ]


# --- dead letters ------------------------------------------------------------------------

_REPEATED_ANYWAY = ("heartbeat", "power_state_report")


async def drain_dead_letters(amqp_url: str, prefix: str, outcome: Outcome) -> None:
    """Take every message out of the dead-letter queue; count those that were work."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{prefix}.dead", passive=True)
        while (incoming := await queue.get(no_ack=True, fail=False)) is not None:
            kind, server_id = _describe_message(incoming.body)
            if kind not in _REPEATED_ANYWAY:
                outcome.dead += 1
                outcome.problems.append(f"dead-lettered {kind} of server {server_id}")
    finally:
        await connection.close()


def _describe_message(body: bytes) -> tuple[str, str]:
    try:
        message = messages.parse(body)
    except ValueError:
        return "unparseable message", "?"
    return message.type, str(message.server_id)


# --- domains -----------------------------------------------------------------------------


class DomainWatch:
    """Listens to the reports queue's traffic (a queue of its own bound to the same routing
    key) and keeps each host's latest report of all its domains."""

    def __init__(self, amqp_url: str, prefix: str) -> None:
        self.amqp_url = amqp_url
        self.prefix = prefix
        self.latest: dict[str, tuple[datetime, set[str]]] = {}
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(self.amqp_url)
        channel = await self._connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.prefix, routing_key=REPORTS)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        with contextlib.suppress(ValueError):
            report = messages.parse(incoming.body)
            if isinstance(report, messages.PowerStateReport) and report.server_id is None:
                ids = {str(s.server_id) for s in report.servers}
                self.latest[report.host] = (report.observed_at, ids)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def reports_since(self, since: datetime, hosts: set[str], timeout_s: float) -> None:
        """Wait (bounded) for a report newer than ``since`` from each of ``hosts``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(h in self.latest and self.latest[h][0] > since for h in hosts):
                return
            await asyncio.sleep(0.2)


#: How long the hypervisors may take to agree with the database once the load has settled:
#: a server its restarted host lost is found missing by the probe the next periodic report
#: asks for (conductor/reconcile.py), a deleted server's domain purged after the next.
DOMAINS_AGREE_WITHIN_S = 20.0


async def check_domains(
    conn: asyncpg.Connection, watch: DomainWatch, tenant: str, outcome: Outcome
) -> None:
    """Each host's domains of ``tenant``'s servers against the database: a server that
    should run there and is missing, or a domain of a server that is not there (an orphan).
    Reconciliation is periodic, so they must agree within ``DOMAINS_AGREE_WITHIN_S``."""
    deadline = time.monotonic() + DOMAINS_AGREE_WITHIN_S
    while True:
        problems = await _domain_problems(conn, watch, tenant)
        if not problems or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    if problems:
        outcome.domains = "MISMATCH"
        outcome.problems += problems


async def _domain_problems(conn: asyncpg.Connection, watch: DomainWatch, tenant: str) -> list[str]:
    required, allowed = await _expected_domains(conn, tenant)
    since = datetime.now(UTC)
    await watch.reports_since(since, {h for h, ids in required.items() if ids}, timeout_s=6.0)
    owned = {str(r["id"]) for r in await conn.fetch(_TENANT_SERVERS, tenant)}
    problems = []
    for host in sorted(set(required) | set(watch.latest)):
        observed_at, seen = watch.latest.get(host, (None, set()))
        fresh = observed_at is not None and observed_at > since
        seen = seen & owned if fresh else set()
        if missing := required.get(host, set()) - seen:
            problems += [
                f"{host} lacks the domain of {await _describe(conn, sid)}"
                for sid in sorted(missing)
            ]
        if fresh and (orphans := seen - allowed.get(host, set())):
            problems += [
                f"{host} holds a domain the DB does not put there: {await _describe(conn, sid)}"
                for sid in sorted(orphans)
            ]
    return problems


_TENANT_SERVERS = "SELECT id FROM servers WHERE tenant_id = $1"


async def _describe(conn: asyncpg.Connection, server_id: str) -> str:
    """A server's row and its actions, to tell how a domain came to be where it is."""
    row = await conn.fetchrow(
        "SELECT vm_state, task_state, host, deleted_at FROM servers WHERE id = $1",
        uuid.UUID(server_id),
    )
    acts = await conn.fetch(
        "SELECT action, result, message FROM actions WHERE server_id = $1 ORDER BY started_at",
        uuid.UUID(server_id),
    )
    history = ", ".join(f"{a['action']}={a['result']}" for a in acts)
    return f"{server_id} ({dict(row) if row else None}; {history})"


_EXPECTED = """
SELECT s.id, s.host, s.vm_state, s.task_state, m.source_host, m.dest_host
  FROM servers s
  LEFT JOIN migrations m ON m.server_id = s.id
        AND (m.status NOT IN ('confirmed', 'reverted', 'error') OR m.held = 'source')
 WHERE s.tenant_id = $1 AND s.deleted_at IS NULL
"""


async def _expected_domains(
    conn: asyncpg.Connection, tenant: str
) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(required, allowed) domains per host: a settled server on a hypervisor must have its
    domain on its host; any live server may have one on its host or a migration's hosts
    (a failed resize's source keeps the original while its migration holds the source's
    claim: deleting the server destroys it there)."""
    required: dict[str, set[str]] = defaultdict(set)
    allowed: dict[str, set[str]] = defaultdict(set)
    for r in await conn.fetch(_EXPECTED, tenant):
        sid = str(r["id"])
        if r["host"] and r["vm_state"] in _ON_HYPERVISOR and r["task_state"] is None:
            required[r["host"]].add(sid)
        for host in (r["host"], r["source_host"], r["dest_host"]):
            if host:
                allowed[host].add(sid)
    return required, allowed
