"""The agent's answer to a gateway's console call (shared/bus: ``Bus.call``): where the display
of a server's running domain listens on this host, or why there is none.

A call is answered at once and changes nothing, so it takes no server lock: a console asked
for while a command runs on the server sees the domain as it is at that moment, as a user
looking at the screen would.
"""

from __future__ import annotations

import logging

from compute_agent.virt.driver import (
    ComputeDriver,
    ConsoleNotReady,
    ConsoleNotSupported,
    ConsoleUnavailable,
    DriverError,
)
from shared.logging import request_context
from shared.messages import ConsoleAnswer, ConsoleRefusal, GetConsole, Message

log = logging.getLogger(__name__)

#: each refusal of the driver, and how the answer names it
_REFUSALS: tuple[tuple[type[DriverError], ConsoleRefusal], ...] = (
    (ConsoleNotSupported, "unsupported"),
    (ConsoleUnavailable, "unavailable"),
    (ConsoleNotReady, "not_ready"),
)


class ConsoleResponder:
    """Answers ``GetConsole`` calls from the host's driver."""

    def __init__(self, driver: ComputeDriver) -> None:
        self.driver = driver

    async def __call__(self, message: Message) -> Message:
        if not isinstance(message, GetConsole):
            raise TypeError(f"the agent answers no {message.type} call")
        with request_context(message.request_id):
            return await self._answer(message)

    async def _answer(self, call: GetConsole) -> ConsoleAnswer:
        try:
            endpoint = await self.driver.get_console(call.domain_name, call.protocol)
        except DriverError as exc:
            reason = _refusal(exc)
            log.info("no %s console for %s: %s", call.protocol, call.domain_name, exc)
            return ConsoleAnswer(
                request_id=call.request_id,
                server_id=call.server_id,
                refused=reason,
                detail=str(exc),
            )
        return ConsoleAnswer(
            request_id=call.request_id,
            server_id=call.server_id,
            host=endpoint.host,
            port=endpoint.port,
        )


def _refusal(exc: DriverError) -> ConsoleRefusal:
    """How the answer names a driver's refusal; any other hypervisor error means the domain
    could not be read now: not ready."""
    for kind, reason in _REFUSALS:
        if isinstance(exc, kind):
            return reason
    return "not_ready"
