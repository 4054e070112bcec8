"""The agent's answers to a gateway's console calls (shared/bus: ``Bus.call``): where the
display of a server's running domain listens on this host, or why there is none
(``GetConsole``); the end of a server's serial console log, cut to the lines asked for
(``GetConsoleOutput``, nova's os-console-output).

A call is answered at once and changes nothing, so it takes no server lock: a console asked
for while a command runs on the server sees the domain as it is at that moment, as a user
looking at the screen would.
"""

from __future__ import annotations

import logging
import re

from compute_agent.virt.driver import (
    ComputeDriver,
    ConsoleNotReady,
    ConsoleNotSupported,
    ConsoleUnavailable,
    DriverError,
)
from shared.logging import request_context
from shared.messages import (
    ConsoleAnswer,
    ConsoleOutputAnswer,
    ConsoleRefusal,
    GetConsole,
    GetConsoleOutput,
    Message,
)

log = logging.getLogger(__name__)

#: each refusal of the driver, and how the answer names it
_REFUSALS: tuple[tuple[type[DriverError], ConsoleRefusal], ...] = (
    (ConsoleNotSupported, "unsupported"),
    (ConsoleUnavailable, "unavailable"),
    (ConsoleNotReady, "not_ready"),
)


#: one line of a log: up to and with its line end, or the last one, unended (a prompt)
_LINE = re.compile(r"[^\n]*\n|[^\n]+$")


def last_lines(log: str, length: int | None) -> str:
    """The last ``length`` lines of ``log``, line ends kept (None: all of it). A line is what
    ends with a newline, and what follows the last one; a log's final newline starts no
    line (nova counted one there, so its ``length=1`` of a log ending in a newline was
    empty)."""
    if length is None:
        return log
    if length <= 0:
        return ""
    return "".join(_LINE.findall(log)[-length:])


class ConsoleResponder:
    """Answers ``GetConsole`` and ``GetConsoleOutput`` calls from the host's driver."""

    def __init__(self, driver: ComputeDriver) -> None:
        self.driver = driver

    async def __call__(self, message: Message) -> Message:
        with request_context(message.request_id):
            if isinstance(message, GetConsole):
                return await self._answer(message)
            if isinstance(message, GetConsoleOutput):
                return await self._output(message)
        raise TypeError(f"the agent answers no {message.type} call")

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

    async def _output(self, call: GetConsoleOutput) -> ConsoleOutputAnswer:
        """The log's end; any refusal of the driver means the server has no guest here now."""
        try:
            log_text = await self.driver.console_output(call.domain_name)
        except DriverError as exc:
            log.info("no console output of %s: %s", call.domain_name, exc)
            return ConsoleOutputAnswer(
                request_id=call.request_id,
                server_id=call.server_id,
                refused="not_ready",
                detail=str(exc),
            )
        return ConsoleOutputAnswer(
            request_id=call.request_id,
            server_id=call.server_id,
            output=last_lines(log_text, call.length),
        )


def _refusal(exc: DriverError) -> ConsoleRefusal:
    """How the answer names a driver's refusal; any other hypervisor error means the domain
    could not be read now: not ready."""
    for kind, reason in _REFUSALS:
        if isinstance(exc, kind):
            return reason
    return "not_ready"
