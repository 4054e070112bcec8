"""What ``GroupCommit`` (shared/db/group_commit.py) adds to the sent marks' behaviour
(tests/unit/test_sent_marks.py): each caller gets its own item's answer, and items of one key
never share a statement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg

from shared.db.group_commit import GroupCommit


class _Pool:
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[None]:
        yield None


def _doubling(groups: list[list[tuple[str, int]]]) -> Any:
    """A statement that records its group and answers each item with its number doubled."""

    async def statement(conn: Any, items: list[tuple[str, int]]) -> list[int]:
        groups.append(list(items))
        await asyncio.sleep(0.01)
        return [n * 2 for _, n in items]

    return statement


async def test_each_caller_gets_its_own_answer() -> None:
    groups: list[list[tuple[str, int]]] = []
    commit = GroupCommit(cast(asyncpg.Pool, _Pool()), _doubling(groups))
    answers = await asyncio.gather(*(commit.submit((f"k{n}", n)) for n in range(10)))
    assert answers == [n * 2 for n in range(10)]
    assert groups == [[(f"k{n}", n) for n in range(10)]]  # submitted at once: one statement


async def test_items_of_one_key_go_in_different_statements_in_order() -> None:
    groups: list[list[tuple[str, int]]] = []
    commit = GroupCommit(cast(asyncpg.Pool, _Pool()), _doubling(groups), key=lambda i: i[0])
    first = asyncio.create_task(commit.submit(("a", 0)))
    await asyncio.sleep(0.001)  # in flight: the rest wait for the next statement
    items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)]
    answers = await asyncio.gather(*(commit.submit(item) for item in items))
    assert await first == 0
    assert answers == [2, 4, 6, 8, 10]
    assert groups == [[("a", 0)], [("a", 1), ("b", 2), ("c", 4)], [("a", 3), ("b", 5)]]
