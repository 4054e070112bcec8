"""Work a service repeats every so often (the reaper, the metrics' counts), as one task.

A round that fails for a reason ``tolerated`` names (the database is away) is logged and the
next round comes as usual; anything else is a bug and ends the loop loudly, in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
    ) -> None:
        """``what``: for the log; ``first_now``: the first round at once, not after one
        interval; an ``interval_s`` of 0 or less: never (start does nothing)."""
        self.what = what
        self.work = work
        self.interval_s = interval_s
        self.tolerated = tolerated
        self.first_now = first_now
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

    async def _forever(self) -> None:
        if not self.first_now:
            await asyncio.sleep(self.interval_s)
        while True:
            try:
                await self.work()
            except self.tolerated:
                log.warning("could not %s this time", self.what, exc_info=True)
            await asyncio.sleep(self.interval_s)
