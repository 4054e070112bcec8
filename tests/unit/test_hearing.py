"""A conductor judges hosts on their silence only once it could hear them for a whole
window (conductor/hearing.py): an outage of the broker connection or a heartbeat the
database refused makes silence meaningless until then."""

from __future__ import annotations

from typing import cast

from conductor.hearing import Hearing
from shared.bus import Bus


class Connection:
    """What ``Hearing`` asks of the bus."""

    is_connected = True


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def hearing(window_s: float = 30.0) -> tuple[Hearing, Connection, Clock]:
    connection, clock = Connection(), Clock()
    return Hearing(cast(Bus, connection), window_s, clock=clock), connection, clock


async def test_a_conductor_that_starts_judges_after_a_whole_window_heard() -> None:
    """Every host looks silent to a conductor starting after all were down: their
    heartbeats wait on the broker, unrecorded."""
    watch, _, clock = hearing(30)
    await watch.sample()
    assert not watch.trusted()
    clock.now += 29
    await watch.sample()
    assert not watch.trusted()
    clock.now += 1
    assert watch.trusted()


async def test_a_broker_outage_suspends_judgement_for_a_whole_window_after_it() -> None:
    watch, connection, clock = hearing(30)
    connection.is_connected = False
    await watch.sample()
    assert not watch.trusted()
    clock.now += 60  # still away: every sample moves the outage on
    await watch.sample()
    assert not watch.trusted()
    connection.is_connected = True
    clock.now += 29
    await watch.sample()
    assert not watch.trusted()
    assert "29 s ago" in watch.why_not()
    clock.now += 1
    assert watch.trusted()


def test_a_heartbeat_the_database_refused_counts_as_an_outage() -> None:
    watch, _, clock = hearing(10)
    watch.missed()
    assert not watch.trusted()
    clock.now += 10
    assert watch.trusted()
    watch.missed(at=clock.now - 5)
    assert not watch.trusted()
