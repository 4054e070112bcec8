"""Group commit: the statements of many concurrent callers, made as one.

Under load a process runs the same small write for many callers at once (the gateway marks
each request's actions sent, the conductor applies each host's report of a finished task).
Each alone is a round trip and a commit, for the process and for PostgreSQL, and most of
what a write costs here is that, not the rows. ``GroupCommit`` makes one statement at a time:
the items submitted while one is in flight go together in the next, so an idle process still
writes at once (a group of one) and a busy one writes groups as large as its load makes them,
with no timer. Each caller waits for the statement that holds its own item and gets its own
answer, or that statement's error (a failed statement fails exactly its own callers; the
statements are run by a task of their own, so a caller that gives up waiting takes nobody
else's item with it).

The statements of a busy spell share one borrowed connection: on a pool every request queues
for, borrowing again for each would have every item wait in that queue twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

import asyncpg

from shared.db.pool import Conn

Item = TypeVar("Item")
Answer = TypeVar("Answer")

#: one statement for a group: an answer for each item, in the items' order
Statement = Callable[[Conn, list[Item]], Awaitable[Sequence[Answer]]]


class GroupCommit(Generic[Item, Answer]):
    """``statement`` run for every item waiting when it starts, one run at a time.

    ``key``: items of one key never share a statement; the later waits for the next one (two
    reports of one server in one UPDATE would update its row once, by whichever came first)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        statement: Statement[Item, Answer],
        *,
        key: Callable[[Item], Hashable] | None = None,
    ) -> None:
        self._pool = pool
        self._statement = statement
        self._key = key
        self._waiting: list[_Waiter[Item, Answer]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Answer:
        """``item``'s answer, from the statement that holds it."""
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        return await done

    async def _run(self) -> None:
        """One statement after the other, each for the items waiting when it starts."""
        try:
            while self._waiting:
                await self._run_on_one_connection()
        except asyncio.CancelledError:  # the process stops: nobody will make these writes
            _settle_all(self._take_all(), asyncio.CancelledError())
            raise
        finally:
            self._runner = None

    async def _run_on_one_connection(self) -> None:
        """Run statements on one borrowed connection while items keep coming; give it back
        after a statement that failed (the connection may be what failed). Without a
        connection to be had, every item waiting fails."""
        try:
            async with self._pool.acquire() as conn:
                while self._waiting:
                    group = self._take()
                    try:
                        answers = await self._statement(conn, [item for item, _ in group])
                    except Exception as exc:
                        _settle_all(group, exc)
                        return
                    except asyncio.CancelledError:
                        _settle_all(group, asyncio.CancelledError())
                        raise
                    _answer(group, answers)
        except Exception as exc:
            _settle_all(self._take_all(), exc)

    def _take(self) -> list[_Waiter[Item, Answer]]:
        """The next group: every item waiting, but the second of a key (left waiting)."""
        if self._key is None:
            return self._take_all()
        group: list[_Waiter[Item, Answer]] = []
        later: list[_Waiter[Item, Answer]] = []
        keys: set[Hashable] = set()
        for waiter in self._waiting:
            key = self._key(waiter[0])
            (later if key in keys else group).append(waiter)
            keys.add(key)
        self._waiting = later
        return group

    def _take_all(self) -> list[_Waiter[Item, Answer]]:
        group, self._waiting = self._waiting, []
        return group


#: an item waiting for its statement, and what tells its caller the answer
_Waiter = tuple[Item, "asyncio.Future[Answer]"]


def _answer(group: list[_Waiter[Item, Answer]], answers: Sequence[Answer]) -> None:
    """Give each caller still waiting its own answer."""
    assert len(answers) == len(group), "a group statement answers every item"
    for (_, done), answer in zip(group, answers, strict=True):
        if not done.done():
            done.set_result(answer)


def _settle_all(group: list[_Waiter[Item, Answer]], outcome: BaseException) -> None:
    """Fail each caller still waiting with ``outcome`` (cancelled, or the error)."""
    for _, done in group:
        if done.done():
            continue
        if isinstance(outcome, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(outcome)
