"""Time every scheduling decision by its outcome (``stratus_scheduler_*``, shared/metrics.py).

A decorator, so that the scheduler's methods stay about choosing hosts: ``placed`` (a host
was claimed), ``no_valid_host`` (no host has room: also counted as a failure), ``gone`` (the
server was deleted while it was being placed) or ``error`` (the database failed us).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from shared import metrics

P = ParamSpec("P")
Host = TypeVar("Host", bound=str | None)


Decide = Callable[P, Awaitable[Host]]


def timed_decision(no_host: type[Exception]) -> Callable[[Decide[P, Host]], Decide[P, Host]]:
    """A decorator of a decision that raises ``no_host`` when no host has room, recording
    how long each call took and how it ended."""

    def decorate(decide: Decide[P, Host]) -> Decide[P, Host]:
        @functools.wraps(decide)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> Host:
            started = time.perf_counter()
            try:
                host = await decide(*args, **kwargs)
            except no_host:
                metrics.scheduled("no_valid_host", started)
                raise
            except Exception:
                metrics.scheduled("error", started)
                raise
            metrics.scheduled("placed" if host is not None else "gone", started)
            return host

        return timed

    return decorate
