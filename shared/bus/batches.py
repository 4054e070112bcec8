"""Messages for one queue published together travel as one AMQP message.

Under load, the CPU a message costs is mostly not our work but the message's own: every
process that touches it makes a socket write for it (the publish, the delivery's ack) and
waits for a read (the confirm, the delivery), and the broker routes, persists, confirms and
forgets each one. A boot's three messages cost the five processes a boot involves more than
the boot's own work. So a publisher sends at most one AMQP message per routing key at a
time, and the messages published to that key while it awaits its confirm go together in the
next one (group commit, as a database's WAL flush does it): a quiet bus sends a lone message
at once and as itself, a busy one sends batches as large as the load makes them, and nobody
waits for a timer.

A batch is confirmed, delivered and acknowledged as one; the consumer handles each message
in it as if it had come alone (shared/bus/rabbitmq.py): a message that fails is sent back or
dead-lettered alone, the batch acknowledged once all are settled.

The wire format is JSON lines: an encoded message never holds a raw newline (JSON escapes it
in strings), so the bodies joined by newlines split back exactly, and a body that does not
parse spoils only itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from shared.bus import PublishFailed

#: The AMQP header that marks a batch and counts its messages.
BATCH_HEADER = "x-stratus-batch"
#: A batch's content type: one encoded message per line.
BATCH_CONTENT_TYPE = "application/x-ndjson"
#: No batch grows past this many bytes, whatever the message count allows: a broker's frame
#: and a consumer's memory both prefer many moderate messages to one huge one.
MAX_BATCH_BYTES = 1 << 20

#: Sends the bodies as one AMQP message (one body: as itself), confirmed, or raises.
Send = Callable[[Sequence[bytes]], Awaitable[None]]


def join(bodies: Sequence[bytes]) -> bytes:
    return b"\n".join(bodies)


def split(body: bytes) -> list[bytes]:
    return body.split(b"\n")


class Coalescer:
    """The publisher side for one routing key: one send in flight, the rest waiting to go
    together in the next."""

    def __init__(self, send: Send, *, max_messages: int) -> None:
        self._send = send
        self._max_messages = max_messages
        self._waiting: list[tuple[bytes, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def publish(self, body: bytes) -> None:
        """Returns once the batch that carried ``body`` was confirmed; raises
        ``PublishFailed`` when it was not (then none of that batch is queued)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((body, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._drain())
        await done

    async def close(self) -> None:
        """Stop sending: whoever still waits is told the message was not queued."""
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        self._settle(self._take_all(), PublishFailed("the bus was closed"))

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._take()
            try:
                await self._send([body for body, _ in batch])
            except asyncio.CancelledError:
                self._settle(batch, PublishFailed("the bus was closed"))
                raise
            except PublishFailed as exc:
                self._settle(batch, exc)
            except Exception as exc:  # anything else must not leave a publisher waiting
                self._settle(batch, PublishFailed(f"publishing failed: {exc!r}"))
            else:
                self._settle(batch, None)

    def _take(self) -> list[tuple[bytes, asyncio.Future[None]]]:
        """The next batch: the oldest waiting messages, within the count and size limits
        (one message always goes, whatever its size)."""
        size = 0
        count = 0
        for body, _ in self._waiting[: self._max_messages]:
            size += len(body) + 1
            if count and size > MAX_BATCH_BYTES:
                break
            count += 1
        batch, self._waiting = self._waiting[:count], self._waiting[count:]
        return batch

    def _take_all(self) -> list[tuple[bytes, asyncio.Future[None]]]:
        batch, self._waiting = self._waiting, []
        return batch

    @staticmethod
    def _settle(
        batch: Sequence[tuple[bytes, asyncio.Future[None]]], error: PublishFailed | None
    ) -> None:
        for _, done in batch:
            if done.done():  # its publisher was cancelled: nobody waits for the answer
                continue
            if error is None:
                done.set_result(None)
            else:
                failure = PublishFailed(str(error))
                failure.__cause__ = error.__cause__ or error
                done.set_exception(failure)
