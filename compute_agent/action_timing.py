"""Time the hypervisor work of a command (``stratus_agent_action_duration_seconds``).

The outcome tells what the agent made of it: ``success``; ``failure`` when the driver refused
(a ``DriverError``, reported to the conductor as the action's fault); ``error`` for anything
unexpected, which the bus redelivers. A cancelled command (the agent stopping) is not timed:
it will run again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from compute_agent.virt.driver import DriverError
from shared import metrics

T = TypeVar("T")


async def timed(action: str, work: Awaitable[T]) -> T:
    """Await ``work`` for the command type ``action``, recording how long it took."""
    started = time.perf_counter()
    try:
        result = await work
    except DriverError:
        metrics.action_done(action, "failure", time.perf_counter() - started)
        raise
    except Exception:
        metrics.action_done(action, "error", time.perf_counter() - started)
        raise
    metrics.action_done(action, "success", time.perf_counter() - started)
    return result
