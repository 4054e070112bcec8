"""Queries on ``fixed_ips``, the addresses given out to servers (IPAM).

The table's primary key is the address itself, so whatever races with whatever, an address is
held by one server at most: the loser's INSERT conflicts and inserts nothing. Claiming an
address also writes the server's ``server_addresses`` row, in the same statement, so the API
shows exactly the addresses the server holds.
"""

from __future__ import annotations

import uuid

from shared.db import locks
from shared.db.pool import Conn, Executor
from shared.networks import IPAddress

#: First half of the two-part advisory lock key of a network; the second is a hash of its label.
_NETWORK_LOCK_CLASS = 0x1BA4


async def lock_network(conn: Conn, network: str) -> None:
    """Hold ``network``'s allocation lock until the transaction ends.

    Not what keeps addresses unique (the primary key does that), but what keeps allocators
    from all chasing the same lowest free address: they take turns instead of colliding.
    """
    await locks.hold(conn, _NETWORK_LOCK_CLASS, network, what="an allocation lock")


async def address_on(conn: Executor, server_id: uuid.UUID, network: str) -> IPAddress | None:
    """The address ``server_id`` holds on ``network``, if any."""
    address: IPAddress | None = await conn.fetchval(
        "SELECT address FROM fixed_ips WHERE server_id = $1 AND network = $2", server_id, network
    )
    return address


async def lowest_free(conn: Executor, first: IPAddress, last: IPAddress) -> IPAddress | None:
    """The lowest address in [first, last] nobody holds, or None when all are taken.

    A free address is either ``first`` or one past a held address, so only those candidates
    are looked at: one index range scan over the held addresses of that range.
    """
    address: IPAddress | None = await conn.fetchval(
        """SELECT c.candidate
             FROM (SELECT $1::inet AS candidate
                   UNION ALL
                   SELECT f.address + 1 FROM fixed_ips f WHERE f.address BETWEEN $1 AND $2) c
            WHERE c.candidate <= $2
              AND NOT EXISTS (SELECT 1 FROM fixed_ips x WHERE x.address = c.candidate)
            ORDER BY c.candidate
            LIMIT 1""",
        first,
        last,
    )
    return address


async def claim(conn: Executor, server_id: uuid.UUID, network: str, address: IPAddress) -> bool:
    """Give ``address`` on ``network`` to the server; False when someone holds it already.

    If another transaction holds it uncommitted, this waits for that one to finish (the unique
    index decides), so a False is final for this address.
    """
    claimed: int = await conn.fetchval(
        """WITH claimed AS (
               INSERT INTO fixed_ips (address, network, server_id) VALUES ($3, $2, $1)
               ON CONFLICT DO NOTHING
               RETURNING address, network, server_id),
                shown AS (
               INSERT INTO server_addresses (server_id, network, version, address)
               SELECT server_id, network, family(address), address FROM claimed
               ON CONFLICT DO NOTHING)
           SELECT count(*) FROM claimed""",
        server_id,
        network,
        address,
    )
    return claimed == 1


async def release(conn: Executor, server_id: uuid.UUID) -> int:
    """Free every address the server holds (and drop them from its representation)."""
    freed: int = await conn.fetchval(
        """WITH freed AS (DELETE FROM fixed_ips WHERE server_id = $1 RETURNING network, address),
                shown AS (DELETE FROM server_addresses a USING freed f
                           WHERE a.server_id = $1 AND a.network = f.network
                             AND a.address = f.address)
           SELECT count(*) FROM freed""",
        server_id,
    )
    return freed
