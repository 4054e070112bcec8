"""The gateway's sent marks as a group commit (shared/db/actions.py ``SentMarks``): the marks
asked for while one UPDATE is in flight go in the next one, every caller waits for its own,
and a failed UPDATE fails exactly the callers whose marks it held."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
import pytest

from shared.db.actions import SentMarks


class _Database:
    """A pool of one connection: records each borrow and each UPDATE's ids; an UPDATE takes
    ``delay`` seconds, and fails with the next of ``failures`` (None: succeeds); a borrow
    fails with ``refusal`` when there is one."""

    def __init__(self, delay: float = 0.01, failures: list[BaseException | None] | None = None):
        self.updates: list[list[uuid.UUID]] = []
        self.borrows = 0
        self.delay = delay
        self.failures = failures or []
        self.refusal: BaseException | None = None

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Database]:
        if self.refusal is not None:
            raise self.refusal
        self.borrows += 1
        yield self

    async def execute(self, query: str, ids: list[uuid.UUID]) -> str:
        assert query.startswith("UPDATE actions SET sent = true")
        self.updates.append(list(ids))
        await asyncio.sleep(self.delay)
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return f"UPDATE {len(ids)}"


def _marks(database: _Database) -> SentMarks:
    return SentMarks(cast(asyncpg.Pool, cast(Any, database)))


async def test_concurrent_marks_share_updates_and_each_waits_for_its_own() -> None:
    database = _Database()
    marks = _marks(database)
    requests = [[uuid.uuid4()] for _ in range(50)]
    first = asyncio.create_task(marks.mark(requests[0]))
    await asyncio.sleep(0.001)  # the first UPDATE is in flight: the others queue behind it
    await asyncio.gather(*(marks.mark(ids) for ids in requests[1:]))
    await first
    assert len(database.updates) == 2
    assert sorted(i for update in database.updates for i in update) == sorted(
        ids[0] for ids in requests
    )
    assert database.updates[0] == requests[0]
    assert database.borrows == 1  # a busy spell's UPDATEs share one connection


async def test_a_mark_is_not_answered_before_its_update_ends() -> None:
    database = _Database(delay=0.05)
    marks = _marks(database)
    task = asyncio.create_task(marks.mark([uuid.uuid4()]))
    await asyncio.sleep(0.02)
    assert not task.done()
    await task


async def test_a_failed_update_fails_its_callers_only() -> None:
    database = _Database(failures=[None, OSError("connection lost")])
    marks = _marks(database)
    first = asyncio.create_task(marks.mark([uuid.uuid4()]))
    await asyncio.sleep(0.001)
    second = [asyncio.create_task(marks.mark([uuid.uuid4()])) for _ in range(3)]
    await first
    for task in second:
        with pytest.raises(OSError, match="connection lost"):
            await task
    await marks.mark([uuid.uuid4()])  # the next UPDATE is made as usual
    assert [len(update) for update in database.updates] == [1, 3, 1]
    assert database.borrows == 2  # on another connection than the one that failed


async def test_without_a_connection_every_waiting_mark_fails() -> None:
    database = _Database()
    database.refusal = OSError("too many clients")
    marks = _marks(database)
    tasks = [asyncio.create_task(marks.mark([uuid.uuid4()])) for _ in range(3)]
    for task in tasks:
        with pytest.raises(OSError, match="too many clients"):
            await task
    database.refusal = None
    await marks.mark([uuid.uuid4()])
    assert len(database.updates) == 1


async def test_a_caller_that_gives_up_takes_no_other_mark_with_it() -> None:
    database = _Database(delay=0.02)
    marks = _marks(database)
    leaving = asyncio.create_task(marks.mark([uuid.uuid4()]))
    staying = asyncio.create_task(marks.mark([uuid.uuid4()]))
    await asyncio.sleep(0.005)
    leaving.cancel()
    await staying
    assert len(database.updates) == 1 and len(database.updates[0]) == 2
