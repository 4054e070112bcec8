"""Fixed addresses for servers (IPAM): one on every configured network, taken when the
conductor has placed the server, given back when the server is deleted.

Each network hands out its lowest free address. Several conductors may allocate at once:
PostgreSQL's unique index on the address decides every race (shared/db/ipam.py), and the loser
simply takes the next free address. Allocation runs under the server's row lock, the lock a
delete takes too, so a server deleted meanwhile never keeps an address, and an address held is
one that a later delete frees (conductor/reports.py, the gateway's local delete).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

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


async def _take_lowest_free(conn: Conn, server_id: uuid.UUID, network: Network) -> IPAddress:
    await ipam.lock_network(conn, network.label)
    # Allocators take turns, but should one not (another version, a manual insert), every
    # lost race still means an address of this network was taken, so the loop ends: with an
    # address, or with the network full.
    while True:
        candidate = await ipam.lowest_free(conn, network.first, network.last)
        if candidate is None:
            raise NetworkFull(network)
        if await ipam.claim(conn, server_id, network.label, candidate):
            return candidate


async def allocate_for_build(
    conn: Conn, request: BuildServer, host: str, settings: Settings
) -> bool:
    """The build's step after the host claim: True when the spawn may be sent.

    False when the server stopped waiting for this build (deleted meanwhile), or when a network
    is full; then the build fails here: the server goes to ERROR with a fault, gives its
    addresses and its claim on ``host`` back, and its action is closed as failed.
    """
    server_id = request.instance.server_id
    async with conn.transaction():
        row = await servers.lock(conn, server_id, None)
        if row is None or row.host != host or row.task_state != TaskState.SPAWNING:
            log.info("server %s is no longer waiting to spawn on %s", server_id, host)
            return False
        try:
            await allocate(conn, server_id, parse_networks(settings.networks))
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
