"""Work a service repeats every so often, as one task: every periodic loop of Stratus (the
conductor's host check, reaper and metrics' counts; the agent's heartbeats and power
reports).

A round that fails for a reason ``tolerated`` names (the database or the broker is away) is
logged and the next round comes as usual; anything else is a bug and ends the loop loudly,
in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self,
        what: str,
        work: Callable[[], Awaitable[object]],
        *,
        interval_s: float,
        tolerated: tuple[type[BaseException], ...],
        first_now: bool = False,
        jitter: float = 0.0,
    ) -> None:
        """``what``: for the log; ``first_now``: the first round at once, not after one
        interval; an ``interval_s`` of 0 or less: never (start does nothing). ``jitter``:
        each wait is shortened by up to this fraction, at random, never lengthened, so that
        processes started together (a simulated cluster, a fleet back from an outage) drift
        apart instead of working in step."""
        self.what = what
        self.work = work
        self.interval_s = interval_s
        self.tolerated = tolerated
        self.first_now = first_now
        self.jitter = jitter
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wait_s(self) -> float:
        """How long until the next round."""
        return self.interval_s * random.uniform(1.0 - self.jitter, 1.0)

    async def _forever(self) -> None:
        if not self.first_now:
            await asyncio.sleep(self.wait_s())
        while True:
            try:
                await self.work()
            except self.tolerated:
                log.warning("could not %s this time", self.what, exc_info=True)
            await asyncio.sleep(self.wait_s())
