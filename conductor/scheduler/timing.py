"""Time every scheduling decision by its outcome (``stratus_scheduler_*``, shared/metrics.py).

A decorator, so that the scheduler's methods stay about choosing hosts: ``placed`` (a host
was claimed), ``no_valid_host`` (no host has room: also counted as a failure), ``gone`` (the
server was deleted while it was being placed) or ``error`` (the database failed us).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from shared import metrics

P = ParamSpec("P")
Result = TypeVar("Result")


Decide = Callable[P, Awaitable[Result]]


def by_host(host: object) -> str | None:
    """The outcome of a decision that returns the host claimed, or None: the server is gone."""
    return "placed" if host is not None else "gone"


def timed_decision(
    no_host: type[Exception], *, outcome: Callable[[Any], str | None] = by_host
) -> Callable[[Decide[P, Result]], Decide[P, Result]]:
    """A decorator of a decision that raises ``no_host`` when no host has room, recording
    how long each call took and how it ended: ``outcome`` of what it returned (None: no
    decision was made, nothing is recorded)."""

    def decorate(decide: Decide[P, Result]) -> Decide[P, Result]:
        @functools.wraps(decide)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> Result:
            started = time.perf_counter()
            try:
                result = await decide(*args, **kwargs)
            except no_host:
                metrics.scheduled("no_valid_host", started)
                raise
            except Exception:
                metrics.scheduled("error", started)
                raise
            ended = outcome(result)
            if ended is not None:
                metrics.scheduled(ended, started)
            return result

        return timed

    return decorate
