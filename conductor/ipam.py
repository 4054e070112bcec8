"""Fixed addresses for servers (IPAM): one on every configured network, taken when the
conductor has placed the server, given back when the server is deleted.

Each network hands out its lowest free address that no other allocator is taking at that
moment. Several conductors allocate at once without waiting for each other: each takes a row
of the network's free addresses with ``FOR UPDATE SKIP LOCKED`` (shared/db/ipam.py), and
PostgreSQL's unique index on the address still decides every race. The free addresses are
written lazily, a chunk at a time, by the first allocator that finds none: networks are
settings (``STRATUS_NETWORKS``) and may be large (an IPv6 /64). Allocation runs under the
server's row lock, the lock a delete takes too, so a server deleted meanwhile never keeps an
address, and an address held is one that a later delete frees (conductor/reports.py, the
gateway's local delete); freeing puts it back among the free ones in the same transaction.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterable, Mapping

from shared.config import Settings
from shared.db import actions, hosts, ipam, servers
from shared.db.hosts import Resources
from shared.db.pool import Conn
from shared.db.records import LockedServer
from shared.messages import BuildServer, Fault
from shared.networks import IPAddress, Network, parse_networks
from shared.states import TaskState

log = logging.getLogger(__name__)


class NetworkFull(Exception):
    """Every address of a network is held."""

    def __init__(self, network: Network) -> None:
        super().__init__(f"No more fixed IP addresses available on network {network.label}.")
        self.network = network


async def allocate(conn: Conn, server_id: uuid.UUID, networks: Iterable[Network]) -> None:
    """Make the server hold one address on every network; raises ``NetworkFull``.

    Idempotent: a network the server already holds an address on is left alone, so a
    redelivered build takes nothing more.
    """
    for network in sorted(networks, key=lambda n: n.label):  # one order: no lock cycles
        if await ipam.address_on(conn, server_id, network.label) is None:
            address = await _take_lowest_free(conn, server_id, network)
            log.info("server %s got %s on network %s", server_id, address, network.label)


#: How many addresses of a network are written into its free addresses at a time: few enough
#: that one build's transaction writes them in milliseconds.
CHUNK = 4096

#: An allocator that takes an address closer than this to the end of what is written writes
#: the next chunk, unless another is writing it: its rows appear when its build commits, long
#: before the allocators, taking the addresses left meanwhile, would run out.
WRITE_AHEAD = CHUNK // 2


async def _take_lowest_free(conn: Conn, server_id: uuid.UUID, network: Network) -> IPAddress:
    """Take the lowest free address of ``network`` for the server; raises ``NetworkFull``.

    The common case is one statement that waits for nobody (and, near the end of what is
    written, the writing of the next chunk if nobody writes it). When it finds no free
    address nobody else is taking (the network's first allocation, a storm faster than the
    writing ahead, a full network), the network's pool is locked (only allocators in the same
    plight wait there) and, in turn: what was written meanwhile is taken, the next chunk of
    the range is written, the addresses other allocators are taking are waited for (one whose
    build rolls back is free again), and the range is written over once more (an address lost
    from the free ones, e.g. by a TRUNCATE, is found again) before the network is called
    full. So ``NetworkFull`` means what it always meant: every address of the range is held.
    """
    taken = await _take(conn, server_id, network, wait=False)
    if taken is not None:
        if taken.filled_to is not None and _due(network, taken.address, taken.filled_to):
            await _write_ahead(conn, network, taken.address)
        return taken.address
    filled_to = await ipam.lock_pool(conn, network.label, network.first, network.last)
    repaired = False
    while True:
        taken = await _take(conn, server_id, network, wait=False)
        if taken is not None:
            return taken.address
        if int(filled_to) < int(network.last):
            filled_to = await _write_next(conn, network, filled_to)
            continue
        taken = await _take(conn, server_id, network, wait=True)
        if taken is not None:
            return taken.address
        if repaired:
            raise NetworkFull(network)
        repaired = True
        found = await ipam.write_free(conn, network.label, network.first, network.last)
        if found:
            log.warning("network %s: %d free addresses were missing", network.label, found)


def _due(network: Network, taken: IPAddress, filled_to: IPAddress) -> bool:
    """Whether taking ``taken`` calls for the next chunk to be written now."""
    return int(filled_to) < int(network.last) and int(filled_to) - int(taken) < WRITE_AHEAD


async def _write_ahead(conn: Conn, network: Network, taken: IPAddress) -> None:
    """Write the next chunk of ``network`` unless another allocator is writing it (or the
    pool is another range's: then the allocators that run out set it right), or has just
    written it (the lock gives the pool as it is now)."""
    filled_to = await ipam.try_lock_pool(conn, network.label, network.first, network.last)
    if filled_to is not None and _due(network, taken, filled_to):
        await _write_next(conn, network, filled_to)


async def _write_next(conn: Conn, network: Network, filled_to: IPAddress) -> IPAddress:
    """Write the chunk of ``network`` after ``filled_to`` (pool locked); where it ends."""
    start = filled_to + 1
    end = network.last if int(network.last) - int(start) < CHUNK else start + (CHUNK - 1)
    written = await ipam.write_free(conn, network.label, start, end)
    log.info("network %s: %d free addresses written, %s to %s", network.label, written, start, end)
    return end


async def _take(
    conn: Conn, server_id: uuid.UUID, network: Network, *, wait: bool
) -> ipam.Taken | None:
    """A free address of ``network`` taken and claimed for the server; None when none is
    free (``ipam.take_free``). A free row whose address is held already (written beside a
    claim in flight) is dropped on the way: every such one is a row fewer, so this ends."""
    while True:
        taken = await ipam.take_free(
            conn, server_id, network.label, network.first, network.last, wait=wait
        )
        if taken is None or taken.claimed:
            return taken


async def allocate_for_build(
    conn: Conn,
    request: BuildServer,
    host: str,
    settings: Settings,
    *,
    taken: Mapping[str, ipam.BuildTake] | None = None,
) -> bool:
    """The build's step after the host claim: True when the spawn may be sent.

    False when the server stopped waiting for this build (deleted meanwhile), or when a network
    is full; then the build fails here: the server goes to ERROR with a fault, gives its
    addresses and its claim on ``host`` back, and its action is closed as failed.

    Each network's address is taken by one statement of its own, which locks the server's
    row and needs no transaction (``ipam.take_for_build``): a build's allocation is a round
    trip a network. Only when a network has no free address nobody is taking (its first
    allocation, a full network...) is the whole allocation made again the long way, in a
    transaction under the server's row lock (``allocate``, which keeps what was taken).

    ``taken``: what the statement that placed the server took already, by network label
    (``build_networks``, ``Scheduler.place_server``); such a network costs no statement more
    when it has its address, and goes the way of the others when it has none.
    """
    server_id = request.instance.server_id
    networks = build_networks(settings)
    folded = taken or {}
    for network in networks:  # one order: no lock cycles
        holds = await _take_for_build(conn, server_id, host, network, folded.get(network.label))
        if holds is None:
            return await _allocate_locked(conn, request, host, networks)
        if not holds:
            log.info("server %s is no longer waiting to spawn on %s", server_id, host)
            return False
    return True


def build_networks(settings: Settings) -> tuple[Network, ...]:
    """The networks a build takes an address on, in the one order every allocator takes
    them in (by label: no lock cycles)."""
    return _sorted_networks(settings.networks)


@functools.lru_cache(maxsize=8)
def _sorted_networks(text: str) -> tuple[Network, ...]:
    return tuple(sorted(parse_networks(text), key=lambda n: n.label))


async def _take_for_build(
    conn: Conn,
    server_id: uuid.UUID,
    host: str,
    network: Network,
    took: ipam.BuildTake | None = None,
) -> bool | None:
    """Make the server waiting to spawn on ``host`` hold an address on ``network``, in one
    statement (two, now and then): True when it does; False when it no longer waits; None
    when no free address nobody else is taking was found (``allocate`` takes it then).

    An address taken but not claimed was either held already (its free row was stale: it
    is dropped) or refused because the server holds one on the network, taken by a delivery
    of the same build at the same moment: it is given back, and the next try finds the
    server's. Either way the next try ends or takes another address: this ends.

    ``took``: the first try's outcome, when the placement statement made it."""
    while True:
        if took is None:
            took = await ipam.take_for_build(
                conn, server_id, host, network.label, network.first, network.last
            )
        if not took.waiting:
            return False
        if took.held is not None:
            return True
        taken = took.taken
        if taken is None:
            return None
        if taken.claimed:
            log.info("server %s got %s on network %s", server_id, taken.address, network.label)
            if taken.filled_to is not None and _due(network, taken.address, taken.filled_to):
                async with conn.transaction():
                    await _write_ahead(conn, network, taken.address)
            return True
        await ipam.give_back(conn, network.label, taken.address)
        took = None


async def _allocate_locked(
    conn: Conn, request: BuildServer, host: str, networks: Iterable[Network]
) -> bool:
    """``allocate_for_build`` the long way: in a transaction, under the server's row lock."""
    server_id = request.instance.server_id
    async with conn.transaction():
        row = await servers.lock(conn, server_id, None)
        if row is None or row.host != host or row.task_state != TaskState.SPAWNING:
            log.info("server %s is no longer waiting to spawn on %s", server_id, host)
            return False
        try:
            await allocate(conn, server_id, networks)
        except NetworkFull as exc:
            await _fail_build(conn, request, row, str(exc))
            return False
    return True


async def _fail_build(conn: Conn, request: BuildServer, row: LockedServer, reason: str) -> None:
    server_id = request.instance.server_id
    log.warning("cannot build server %s: %s", server_id, reason)
    await ipam.release(conn, server_id)
    failed = await servers.set_error(
        conn, server_id, Fault(code=500, message=reason), expected_task=TaskState.SPAWNING.value
    )
    if failed:
        await hosts.release(conn, row.placed_host, Resources(row.vcpus, row.ram_mb, row.disk_gb))
        await servers.unassign_host(conn, server_id)
    await actions.finish(conn, request.action_id, success=False, message=reason)
