"""The machine's RabbitMQ for tests: reachable, or a skip (a failure when CI requires it)."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid

import aio_pika

from tests.support.missing import RABBITMQ, unavailable

log = logging.getLogger(__name__)

AMQP_URL = os.environ.get("STRATUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


async def require_rabbitmq() -> str:
    """The broker URL; skips the test when there is none, or fails it when CI requires one."""
    try:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        log.info("RabbitMQ at %s: %r", AMQP_URL, exc)
        unavailable(RABBITMQ.format(url=AMQP_URL), required_by="STRATUS_REQUIRE_RABBITMQ")
    await connection.close()
    return AMQP_URL


def unique_prefix() -> str:
    return f"stratus-test-{uuid.uuid4().hex[:10]}"


async def delete_topology(prefix: str, queues: list[str]) -> None:
    """Remove a test's exchanges and queues from the shared broker (a host's calls queue
    with its command queue: an agent that serves ``compute.<host>`` serves ``calls.<host>``)."""
    calls = [f"calls.{q.removeprefix('compute.')}" for q in queues if q.startswith("compute.")]
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for name in [*queues, *calls, "dead"]:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(f"{prefix}.{name}")
        channel = await connection.channel()
        for exchange in (prefix, f"{prefix}.dlx"):
            try:
                await channel.exchange_delete(exchange)
            except aio_pika.exceptions.AMQPError:
                channel = await connection.channel()
    finally:
        await connection.close()
