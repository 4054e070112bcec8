"""The detailed list's shared validations (api_gateway/views/cache.py ``Coalescer``): a request
never gets the answer of a round that started before it arrived, so it never misses a write
its client saw acknowledged; requests that arrive during one round share the next."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable

import pytest

from api_gateway.views.cache import Coalescer


class Database:
    """A value that writes change, read by rounds the test lets finish one at a time."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.release = asyncio.Event()

    async def read(self) -> int:
        """The value as it is when the round starts (a statement's snapshot), answered once
        the test releases the round."""
        seen = self.value
        self.reads += 1
        await self.release.wait()
        self.release.clear()
        return seen


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _finish_round(db: Database) -> None:
    db.release.set()
    await _settle()


async def test_a_request_arriving_during_a_round_waits_for_a_round_of_its_own() -> None:
    rounds: Coalescer[int] = Coalescer()
    db = Database()
    first = asyncio.ensure_future(rounds.run("page", db.read))
    await _settle()
    db.value = 1  # a write acknowledged before the second request arrives
    second = asyncio.ensure_future(rounds.run("page", db.read))
    await _settle()
    await _finish_round(db)
    assert first.result() == 0
    assert not second.done()  # not answered by the round that read before the write
    await _finish_round(db)
    assert second.result() == 1
    assert db.reads == 2
    assert len(rounds) == 0


async def test_requests_arriving_during_one_round_share_the_next() -> None:
    rounds: Coalescer[int] = Coalescer()
    db = Database()
    first = asyncio.ensure_future(rounds.run("page", db.read))
    await _settle()
    db.value = 7
    waiting = [asyncio.ensure_future(rounds.run("page", db.read)) for _ in range(5)]
    await _settle()
    await _finish_round(db)
    await _finish_round(db)
    assert first.result() == 0
    assert [w.result() for w in waiting] == [7] * 5
    assert db.reads == 2  # one round for the first, one for the five
    assert len(rounds) == 0


async def test_keys_never_share_rounds() -> None:
    rounds: Coalescer[str] = Coalescer()
    release = asyncio.Event()

    async def answer(key: str) -> str:
        await release.wait()
        return key

    tasks = {
        key: asyncio.ensure_future(rounds.run(key, functools.partial(answer, key)))
        for key in ("project-a", "project-b")
    }
    await _settle()
    release.set()
    await _settle()
    assert {key: task.result() for key, task in tasks.items()} == {
        "project-a": "project-a",
        "project-b": "project-b",
    }


async def test_a_failed_round_fails_its_requests_only() -> None:
    rounds: Coalescer[int] = Coalescer()
    db = Database()
    failing = True

    async def read() -> int:
        value = await db.read()
        if failing:
            raise LookupError("the marker is gone")
        return value

    first = asyncio.ensure_future(rounds.run("page", read))
    await _settle()
    second = asyncio.ensure_future(rounds.run("page", read))
    await _settle()
    await _finish_round(db)
    failing = False
    await _finish_round(db)
    with pytest.raises(LookupError):
        first.result()
    assert second.result() == 0
    third = asyncio.ensure_future(rounds.run("page", read))
    await _finish_round(db)
    assert third.result() == 0
    assert len(rounds) == 0


async def test_a_cancelled_request_cancels_no_other() -> None:
    rounds: Coalescer[int] = Coalescer()
    db = Database()
    first = asyncio.ensure_future(rounds.run("page", db.read))
    await _settle()
    leaving, staying = (asyncio.ensure_future(rounds.run("page", db.read)) for _ in range(2))
    await _settle()
    first.cancel()
    leaving.cancel()
    await _settle()
    await _finish_round(db)  # the first round still ends: it belongs to no single request
    await _finish_round(db)
    assert first.cancelled() and leaving.cancelled()
    assert staying.result() == 0
    assert len(rounds) == 0


async def test_a_round_that_cannot_start_fails_its_requests_instead_of_hanging() -> None:
    rounds: Coalescer[int] = Coalescer()
    db = Database()
    first = asyncio.ensure_future(rounds.run("page", db.read))
    await _settle()

    def broken() -> Awaitable[int]:
        raise RuntimeError("no statement")

    second = asyncio.ensure_future(rounds.run("page", broken))
    await _settle()
    await _finish_round(db)
    assert first.result() == 0
    with pytest.raises(RuntimeError):
        second.result()
    assert len(rounds) == 0
