"""Periodic work goes on through the failures it tolerates, and stops when asked."""

from __future__ import annotations

import asyncio

from shared.periodic import Periodic


async def test_rounds_go_on_through_tolerated_failures() -> None:
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise OSError("the database is away")

    periodic = Periodic("count", work, interval_s=0.01, tolerated=(OSError,), first_now=True)
    periodic.start()
    for _ in range(200):
        if len(rounds) >= 4:
            break
        await asyncio.sleep(0.01)
    await periodic.stop()
    assert len(rounds) >= 4
    stopped_at = len(rounds)
    await asyncio.sleep(0.05)
    assert len(rounds) == stopped_at


async def test_an_interval_of_zero_means_never() -> None:
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(1)

    periodic = Periodic("never", work, interval_s=0, tolerated=(OSError,), first_now=True)
    periodic.start()
    await asyncio.sleep(0.02)
    await periodic.stop()
    assert rounds == []


def test_a_jittered_wait_is_shorter_at_random_but_never_longer_than_the_interval() -> None:
    async def work() -> None:
        pass

    jittered = Periodic("beat", work, interval_s=10.0, tolerated=(), jitter=0.25)
    waits = [jittered.wait_s() for _ in range(1000)]
    assert all(7.5 <= wait <= 10.0 for wait in waits)
    assert len(set(waits)) > 1  # agents started together drift apart
    assert Periodic("count", work, interval_s=10.0, tolerated=()).wait_s() == 10.0
