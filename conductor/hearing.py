"""Whether this conductor could have heard the hosts' heartbeats lately.

A host is judged dead on silence: no heartbeat recorded for ``host_down_after_s``. But a
heartbeat reaches the database only through the broker and a conductor: while RabbitMQ is
down, or this conductor's connection to it is, or PostgreSQL refuses the heartbeat it
received, every host falls silent at once, and that silence says nothing about the hosts.
Judging on it would mark every host down and abandon every task on them (the reaper), which
is what a broker restart did before this: accepted requests ended in ERROR with "host h1
stopped heartbeating" while the hosts ran on.

So a conductor judges hosts on silence only once it has been able to hear them for a whole
window since its last outage: connected to the broker and recording heartbeats for
``window_s`` in a row. The bus is sampled (``sample``, every second: an outage shorter than
that loses at most a heartbeat, which the window absorbs); a heartbeat the database refused
counts as an outage (``missed``). A conductor that starts has heard nothing yet either: the
heartbeats sent while no conductor ran are still queued on the broker, or were never recorded,
so the database shows every host silent; it too waits a whole window before judging (a host
that died while no conductor ran is found dead that much later).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.bus import Bus


class Hearing:
    def __init__(
        self, bus: Bus, window_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.bus = bus
        self.window_s = window_s
        self.clock = clock
        #: when this conductor last could not hear: before it started, at first
        self.deaf_at: float = clock()

    async def sample(self) -> None:
        """Note an outage of the broker connection, if there is one now."""
        if not self.bus.is_connected:
            self.missed()

    def missed(self, at: float | None = None) -> None:
        """A heartbeat could not be heard or recorded (now, or ``at`` on ``clock``)."""
        self.deaf_at = self.clock() if at is None else at

    def trusted(self) -> bool:
        """May silence be taken for a host's death? Only after a whole window heard."""
        return self.clock() - self.deaf_at >= self.window_s

    def why_not(self) -> str:
        """Why silence is not judged now (for the log)."""
        ago = self.clock() - self.deaf_at
        return f"heartbeats could not be heard {ago:.0f} s ago (window {self.window_s:g} s)"
