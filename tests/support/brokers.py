"""A broker that refuses messages, in front of a real bus: how tests make a publish fail
(RabbitMQ nacks what it cannot take) without stopping the broker everything else uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from shared import bus as bus_mod
from shared.bus import Bus, PublishFailed
from shared.messages import Message


class RefusingBroker:
    """``bus``, except that messages to the conductors are refused once ``take`` of them
    went through (0: all are refused), each refusal after ``before_refusing`` (if given)
    returned: a slow nack, while what went through is handled. Everything else goes to
    ``bus`` unchanged."""

    def __init__(
        self,
        bus: Bus,
        *,
        take: int = 0,
        before_refusing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus
        self.take = take
        self.before_refusing = before_refusing
        #: messages offered to the conductors so far, refused or not
        self.offered = 0

    def as_bus(self) -> Bus:
        return cast(Bus, self)

    async def connect(self) -> None:
        return None  # the bus behind is connected and closed by its owner

    async def close(self) -> None:
        return None

    async def publish(self, routing_key: str, message: Message) -> None:
        if routing_key == bus_mod.CONDUCTOR:
            self.offered += 1
            if self.offered > self.take:
                if self.before_refusing is not None:
                    await self.before_refusing()
                raise PublishFailed("the broker refused the message")
        await self.bus.publish(routing_key, message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)
