"""Queries on ``fixed_ips``, the addresses given out to servers (IPAM), and on
``free_addresses``, the addresses of each network nobody holds (migration 0024).

``fixed_ips`` decides: its primary key is the address itself, so whatever races with whatever,
an address is held by one server at most (the loser's INSERT conflicts and inserts nothing).
Claiming an address also writes the server's ``server_addresses`` row, in the same statement,
so the API shows exactly the addresses the server holds.

``free_addresses`` is how allocators find an address without waiting for each other: each
deletes the lowest free row nobody else has locked (``FOR UPDATE SKIP LOCKED``) and claims its
address, in one statement of the build's transaction (that take is written once,
``_AddressTake``, for every statement that takes addresses). A deleted ``fixed_ips`` row
puts its address back (the table's trigger), in the deleting transaction. The table is
written lazily, a chunk at a time (``address_pools`` says how far), by the first allocator
that finds it empty; it may hold an address that is held meanwhile (a chunk written beside
a claim in flight): the claim of such a row inserts nothing, and the allocator takes the
next.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import asyncpg

from shared.db.pool import Conn, Executor
from shared.db.sql import Params
from shared.networks import IPAddress, Network


async def address_on(conn: Executor, server_id: uuid.UUID, network: str) -> IPAddress | None:
    """The address ``server_id`` holds on ``network``, if any."""
    address: IPAddress | None = await conn.fetchval(
        "SELECT address FROM fixed_ips WHERE server_id = $1 AND network = $2", server_id, network
    )
    return address


@dataclass(frozen=True)
class Taken:
    """A free address taken off ``free_addresses``; ``claimed`` False when someone held it
    already (the row was stale: it is gone now, and the caller takes another).
    ``filled_to``: how far the network's pool is written, if it is written for this range."""

    address: IPAddress
    claimed: bool
    filled_to: IPAddress | None


@dataclass(frozen=True)
class _AddressTake:
    """The take of one address, as CTEs and result columns for a statement to fold in. It is
    written once, here, for the three statements that take addresses (``take_free``,
    ``take_for_build``, the placement's ``PlacementTake``): written three times, a change to
    one would make the paths hand out addresses differently.

    The CTEs: ``held`` (with ``held``: the address the server holds on the network already;
    then nothing is taken), ``taken`` (the lowest free row in [first, last], deleted),
    ``claimed`` (its address given to the server unless someone holds it) and ``shown`` (its
    representation). ``server``, ``network``, ``first`` and ``last`` are SQL: the statement's
    placeholders, cast where it needs. ``suffix`` keeps the CTEs and columns of several
    networks apart in one statement. ``skip_locked``: free rows others are taking are passed
    over rather than waited for. ``guards``: conditions the row is taken only under (the
    server still waiting for it: a CTE of the statement with a row)."""

    server: str
    network: str
    first: str
    last: str
    suffix: str = ""
    skip_locked: bool = True
    guards: tuple[str, ...] = ()
    held: bool = False

    def ctes(self) -> str:
        """``held`` (with ``held``), ``taken``, ``claimed`` and ``shown``, comma-separated."""
        n, network = self.suffix, self.network
        guards = [*self.guards, *([f"NOT EXISTS (SELECT 1 FROM held{n})"] if self.held else [])]
        also = "".join(f"\n                   AND {guard}" for guard in guards)
        skip = " SKIP LOCKED" if self.skip_locked else ""
        held = (
            f"""held{n} AS (
            SELECT address FROM fixed_ips WHERE server_id = {self.server} AND network = {network}),
     """
            if self.held
            else ""
        )
        return f"""{held}taken{n} AS (
            DELETE FROM free_addresses
             WHERE (network, address) = (
                SELECT network, address FROM free_addresses
                 WHERE network = {network} AND address BETWEEN {self.first} AND {self.last}{also}
                 ORDER BY address LIMIT 1
                   FOR UPDATE{skip})
         RETURNING address),
     claimed{n} AS (
            INSERT INTO fixed_ips (address, network, server_id)
            SELECT address, {network}, {self.server} FROM taken{n}
            ON CONFLICT DO NOTHING
         RETURNING address, network, server_id),
     shown{n} AS (
            INSERT INTO server_addresses (server_id, network, version, address)
            SELECT server_id, network, family(address), address FROM claimed{n}
            ON CONFLICT DO NOTHING)"""

    def columns(self) -> str:
        """The result columns (``read_taken`` and ``read_held`` read them), comma-separated:
        ``filled_to`` is read only for the pool of this very range."""
        n = self.suffix
        held = f"(SELECT address FROM held{n}) AS held{n},\n       " if self.held else ""
        return f"""{held}(SELECT address FROM taken{n}) AS taken{n},
       (SELECT count(*) FROM claimed{n}) AS claimed{n},
       (SELECT filled_to FROM address_pools
         WHERE network = {self.network} AND first = {self.first} AND last = {self.last})
         AS filled_to{n}"""

    def read_taken(self, row: asyncpg.Record) -> Taken | None:
        """The address taken, if any, as a statement with ``columns`` returned it."""
        n = self.suffix
        address = row[f"taken{n}"]
        if address is None:
            return None
        return Taken(address, row[f"claimed{n}"] == 1, row[f"filled_to{n}"])

    def read_held(self, row: asyncpg.Record) -> IPAddress | None:
        """The address the server held already (with ``held``)."""
        held: IPAddress | None = row[f"held{self.suffix}"]
        return held


def _take_free_statement(take: _AddressTake) -> str:
    """``take_free``'s statement: the take alone."""
    return f"WITH {take.ctes()}\nSELECT {take.columns()}"


_FREE_TAKE = _AddressTake(server="$1", network="$2", first="$3", last="$4")
_TAKE_UNLOCKED = _take_free_statement(_FREE_TAKE)
_TAKE_WAITING = _take_free_statement(replace(_FREE_TAKE, skip_locked=False))


async def take_free(
    conn: Conn,
    server_id: uuid.UUID,
    network: str,
    first: IPAddress,
    last: IPAddress,
    *,
    wait: bool = False,
) -> Taken | None:
    """Take the lowest free address of ``network`` in [first, last] and give it to the server;
    None when there is none to take.

    Without ``wait``, addresses other allocators are taking (locked) are passed over, so
    allocators never wait for each other; None then means none was free *and unlocked*. With
    ``wait``, a locked one is waited for: its taker either commits (the address is gone, the
    next is tried) or rolls back (it is free again and taken), so None means none is free.
    The bounds keep out addresses of a range the network no longer has.
    """
    row = await conn.fetchrow(
        _TAKE_WAITING if wait else _TAKE_UNLOCKED, server_id, network, first, last
    )
    assert row is not None
    return _FREE_TAKE.read_taken(row)


#: the take for a build, outside any transaction: the server's row is locked (a delete takes
#: that lock too) and must still be ``spawning`` on the host its build placed it on; an
#: address it holds already on the network is returned instead of a new one.
_BUILD_TAKE = replace(_FREE_TAKE, guards=("EXISTS (SELECT 1 FROM waiting)",), held=True)
_TAKE_FOR_BUILD = f"""
WITH waiting AS (
    SELECT id FROM servers
     WHERE id = $1 AND deleted_at IS NULL AND host = $5 AND task_state = 'spawning'
       FOR UPDATE),
     {_BUILD_TAKE.ctes()}
SELECT EXISTS (SELECT 1 FROM waiting) AS waiting,
       {_BUILD_TAKE.columns()}
"""


@dataclass(frozen=True)
class BuildTake:
    """What ``take_for_build`` found and did: ``waiting`` False when the server no longer
    waits to spawn on the host (nothing taken); ``held``, the address it held already on the
    network (nothing taken); else ``taken`` as ``take_free``'s (None: no free address nobody
    else is taking)."""

    waiting: bool
    held: IPAddress | None
    taken: Taken | None


async def take_for_build(
    conn: Conn,
    server_id: uuid.UUID,
    host: str,
    network: str,
    first: IPAddress,
    last: IPAddress,
) -> BuildTake:
    """``take_free`` without waiting, for a server waiting to spawn on ``host``, in one
    statement that needs no transaction: it locks the server's row (a delete meanwhile
    leaves nothing held), and returns the address the server holds on ``network`` if any (a
    build delivered again takes nothing more).

    The address held is read in the statement's snapshot: if the row lock was waited for (a
    delivery of the same build allocating at once), an address taken meanwhile is not seen,
    and a new one is taken: the unique (server_id, network) of ``fixed_ips`` refuses it
    (``claimed`` False) and ``give_back`` puts it back among the free ones."""
    row = await conn.fetchrow(_TAKE_FOR_BUILD, server_id, network, first, last, host)
    assert row is not None
    return BuildTake(row["waiting"], _BUILD_TAKE.read_held(row), _BUILD_TAKE.read_taken(row))


class PlacementTake:
    """``take_for_build``'s take folded into the statement that places a server
    (shared/db/placement.py ``placement_statement``), for one ``network``: a build whose
    placement also takes its addresses is one round trip and one commit instead of one more
    of each a network.

    The server's row is the placement's to lock, and the take happens only if the statement
    placed it now (``placed``, a CTE with a row then): a server placed by an earlier delivery
    of its build takes nothing here (``allocate_for_build`` sees to it). The CTEs are named
    with ``index`` (one set a network), their placeholders added to the statement's
    ``params``; ``columns`` are what the statement returns for it, ``read`` their meaning.

    Free rows being taken are skipped, never waited for, so a placement queues behind no
    allocator; only a stale free row's address claimed by a transaction in flight is waited
    for (the unique index), under the host's row lock. Should that ever close a cycle,
    PostgreSQL aborts the whole statement, which changed nothing, and it is run again
    (conductor/scheduler/scheduler.py ``_place``)."""

    def __init__(self, params: Params, index: int, network: Network, *, server: str) -> None:
        self.network = network.label
        self._take = _AddressTake(
            server=server,
            network=f"{params.add(network.label)}::text",
            first=f"{params.add(network.first)}::inet",
            last=f"{params.add(network.last)}::inet",
            suffix=f"_{index}",
            held=True,
        )

    def ctes(self, *, placed: str) -> str:
        """The CTEs of the take, comma-separated."""
        return replace(self._take, guards=(f"EXISTS (SELECT 1 FROM {placed})",)).ctes()

    def columns(self) -> str:
        """The statement's columns for this network (``read`` reads them)."""
        return self._take.columns()

    def read(self, row: asyncpg.Record) -> BuildTake:
        """What the take found and did, as ``take_for_build`` says it, for a server the
        statement placed (so ``waiting``: it is spawning on its host now)."""
        return BuildTake(
            waiting=True, held=self._take.read_held(row), taken=self._take.read_taken(row)
        )


async def give_back(conn: Executor, network: str, address: IPAddress) -> bool:
    """Put ``address``, taken off the free ones but claimed by nobody, back among
    ``network``'s free addresses, unless someone holds it (then its free row was stale)."""
    status = await conn.execute(
        """INSERT INTO free_addresses (network, address)
           SELECT $1, $2::inet WHERE NOT EXISTS (SELECT 1 FROM fixed_ips WHERE address = $2)
           ON CONFLICT DO NOTHING""",
        network,
        address,
    )
    return bool(status != "INSERT 0 0")


async def lock_pool(conn: Conn, network: str, first: IPAddress, last: IPAddress) -> IPAddress:
    """Lock ``network``'s row of ``address_pools`` until the transaction ends (creating it)
    and return how far its free addresses are written (``first - 1``: not yet).

    The lock makes the writers of a network's next chunk take turns, and only them. A row for
    another range (the setting changed, or this is another conductor's) is made this range's:
    the free addresses outside it are dropped, and writing starts over from ``first`` (the
    addresses already free are kept: writing a chunk skips them).
    """
    await conn.execute(
        """INSERT INTO address_pools (network, first, last, filled_to)
           VALUES ($1, $2, $3, $2::inet - 1)
           ON CONFLICT DO NOTHING""",
        network,
        first,
        last,
    )
    row = await conn.fetchrow(
        "SELECT first, last, filled_to FROM address_pools WHERE network = $1 FOR UPDATE", network
    )
    assert row is not None
    if (row["first"], row["last"]) == (first, last):
        filled_to: IPAddress = row["filled_to"]
        return filled_to
    await conn.execute(
        "DELETE FROM free_addresses WHERE network = $1 AND address NOT BETWEEN $2 AND $3",
        network,
        first,
        last,
    )
    await conn.execute(
        """UPDATE address_pools SET first = $2, last = $3, filled_to = $2::inet - 1
            WHERE network = $1""",
        network,
        first,
        last,
    )
    return first - 1


async def try_lock_pool(
    conn: Conn, network: str, first: IPAddress, last: IPAddress
) -> IPAddress | None:
    """Like ``lock_pool`` without waiting: how far ``network``'s pool of this range is
    written, locked until the transaction ends; None when another transaction holds the lock
    (it is writing) or the pool is missing or another range's."""
    filled_to: IPAddress | None = await conn.fetchval(
        """SELECT filled_to FROM address_pools
            WHERE network = $1 AND first = $2 AND last = $3
              FOR UPDATE SKIP LOCKED""",
        network,
        first,
        last,
    )
    return filled_to


async def write_free(conn: Conn, network: str, start: IPAddress, end: IPAddress) -> int:
    """Write every address of [start, end] that nobody holds into ``network``'s free
    addresses and record that the pool is written up to ``end``; how many were new.

    Called under ``lock_pool``. Addresses held (in ``fixed_ips``, on whatever network) or
    already free are skipped, so writing a range again repairs it and changes nothing else.
    """
    written: int = await conn.fetchval(
        """WITH written AS (
               INSERT INTO free_addresses (network, address)
               SELECT $1, c.address
                 FROM (SELECT $2::inet + g AS address
                         FROM generate_series(0::bigint, $4::bigint) g) c
                WHERE NOT EXISTS (SELECT 1 FROM fixed_ips f WHERE f.address = c.address)
                  AND NOT EXISTS (SELECT 1 FROM free_addresses x
                                   WHERE x.network = $1 AND x.address = c.address)
               ON CONFLICT DO NOTHING
               RETURNING 1),
                recorded AS (
               UPDATE address_pools SET filled_to = GREATEST(filled_to, $3::inet)
                WHERE network = $1)
           SELECT count(*) FROM written""",
        network,
        start,
        end,
        int(end) - int(start),
    )
    return written


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
    """Free every address the server holds (and drop them from its representation).

    The addresses go back to ``free_addresses`` in this transaction: ``fixed_ips``'s trigger
    does that for every deleted row (this delete, and the cascade of a server row's).
    """
    freed: int = await conn.fetchval(
        """WITH freed AS (DELETE FROM fixed_ips WHERE server_id = $1 RETURNING network, address),
                shown AS (DELETE FROM server_addresses a USING freed f
                           WHERE a.server_id = $1 AND a.network = f.network
                             AND a.address = f.address)
           SELECT count(*) FROM freed""",
        server_id,
    )
    return freed
