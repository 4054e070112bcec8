"""Stand-ins that record what our code does, for tests that count or inspect it: the
database round trips a pooled connection makes, the messages a handler publishes."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared import messages
from shared.db.pool import _Connection, _init_connection
from shared.messages import Message


class CountingConnection(_Connection):
    """A pooled connection that counts its round trips: each statement, BEGIN and COMMIT
    (a class-wide count: read it before and after the work measured)."""

    round_trips = 0

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:  # noqa: ASYNC109
        if not args:  # simple protocol (BEGIN, COMMIT); with arguments it is ``_execute``
            type(self).round_trips += 1
        return await super().execute(query, *args, timeout=timeout)

    async def _execute(self, *args: Any, **kwargs: Any) -> Any:
        type(self).round_trips += 1
        return await super()._execute(*args, **kwargs)


async def counting_pool(url: str, *, max_size: int) -> asyncpg.Pool:
    """A pool on ``url`` of ``CountingConnection``s, each set up as our pools' are."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        connection_class=CountingConnection,
    )
    return pool


class RecordingBus:
    """Takes what is published, as the broker would (encoded and parsed again)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []

    async def declare(self, queue: str) -> None:
        pass

    async def publish(self, routing_key: str, message: Message) -> None:
        self.sent.append((routing_key, messages.parse(messages.encode(message))))
