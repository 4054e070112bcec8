"""Choose the bus implementation from the settings."""

from __future__ import annotations

from shared.bus import Bus
from shared.bus.memory import MemoryBus
from shared.config import Settings


def create_bus(settings: Settings) -> Bus:
    """RabbitMQ when ``amqp_url`` is set, else the in-process bus."""
    if settings.amqp_url:
        from shared.bus.rabbitmq import RabbitBus

        return RabbitBus(
            settings.amqp_url,
            prefix=settings.amqp_prefix,
            max_redeliveries=settings.max_redeliveries,
            batch_max=settings.amqp_batch_max,
        )
    return MemoryBus(max_redeliveries=settings.max_redeliveries)
