"""The wall time of each action on real QEMU, for the table printed at the end of the session.

Each measurement is one action as a user sees it: from the API request to the server being
back in its state and, where the guest has to do something (boot, reboot, resume), to the
guest showing it on its console. The conftest prints the table (``pytest_terminal_summary``)
and, with STRATUS_REALVM_TIMINGS=<file>, writes it there too (Markdown).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Timing:
    action: str
    seconds: float


@dataclass
class Stopwatch:
    timings: list[Timing] = field(default_factory=list)

    @asynccontextmanager
    async def measure(self, action: str) -> AsyncIterator[None]:
        """Time the block as ``action`` (only when it completes: a failure is no timing)."""
        started = time.monotonic()
        yield
        self.record(action, time.monotonic() - started)

    def record(self, action: str, seconds: float) -> None:
        self.timings.append(Timing(action, seconds))

    def table(self) -> str:
        """One Markdown row per action, in the order actions were first timed."""
        by_action: dict[str, list[float]] = {}
        for timing in self.timings:
            by_action.setdefault(timing.action, []).append(timing.seconds)
        rows = [
            "| action | runs | median (s) | min (s) | max (s) |",
            "|---|---:|---:|---:|---:|",
        ]
        for action, seconds in by_action.items():
            rows.append(
                f"| {action} | {len(seconds)} | {statistics.median(seconds):.1f} "
                f"| {min(seconds):.1f} | {max(seconds):.1f} |"
            )
        return "\n".join(rows)


#: the session's measurements (the summary hook reads them)
STOPWATCH = Stopwatch()
