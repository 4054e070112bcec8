"""The load a fault strikes: clients booting servers, acting on them and deleting them
through both gateways, writing down every request the API accepted and what it promised.

A request that asks for a change (a create, an action, a delete) ends in one of three ways:

* *accepted*: the gateway answered 2xx; from then on the system owes its outcome;
* *refused*: the gateway answered something else (a 503: a dependency is down; a 409: the
  server is busy or in ERROR), or no connection could be made at all (the gateway is down):
  the gateway never took it, nothing is owed;
* *indeterminate*: the request went out and no answer came back (the connection was reset,
  the gateway was killed with the request under way, the client gave up waiting). The
  gateway may have taken it or not, so the checks must accept either: counting it as
  refused would make them expect a state the system rightly left. A DELETE whose
  connection was refused is one too: aiohttp sends a cut-off DELETE once more by itself,
  and reports only how that second attempt failed.

The ledger keeps the accepted and the indeterminate requests in the order they were sent
(each client's requests to a server go one at a time). The clients wait for each accepted
action to show before the next (bounded); a server that does not get there is left as it
is, for the checks to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.client import IDEMPOTENT_METHODS

from tests.conftest import IMAGE

#: One step of a server's life: the action's name, its body, the status it ends in.
Step = tuple[str, dict[str, Any], str]

_ACTIONS: tuple[Step, ...] = (
    ("reboot", {"reboot": {"type": "SOFT"}}, "ACTIVE"),
    ("pause", {"pause": None}, "PAUSED"),
    ("unpause", {"unpause": None}, "ACTIVE"),
    ("resize", {"resize": {"flavorRef": "2"}}, "VERIFY_RESIZE"),
    ("confirmResize", {"confirmResize": None}, "ACTIVE"),
)
#: Stop waiting for a status after this long (the server is left to the checks).
_WAIT_S = 25.0
_POLL_S = 0.3
_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=20)


#: ``Client.request``'s status when the request went out and no answer came back.
NO_ANSWER = 0
#: ... and when it never went out (no connection to the gateway): plainly refused.
NOT_SENT = -1


@dataclass(frozen=True)
class Sent:
    """A request that asks for a change and was accepted (``answered``) or got no answer.

    ``expect`` is the status it promises (``DELETED`` for a delete). An unanswered create
    has no ``server_id`` (the id comes in the answer): its server is found by ``name``,
    which is unique to each attempt.
    """

    action: str
    expect: str
    answered: bool
    server_id: str = ""
    request_id: str = ""
    name: str = ""


@dataclass
class Ledger:
    #: accepted and indeterminate requests, in the order they were sent
    sent: list[Sent] = field(default_factory=list)
    refused: int = 0
    #: every answer that is a server error: any 5xx but a 503 with a fault body (the
    #: gateway's word for "a dependency is down, try again"), reads included
    server_errors: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> list[Sent]:
        return [s for s in self.sent if s.answered]

    @property
    def indeterminate(self) -> list[Sent]:
        return [s for s in self.sent if not s.answered]


class Client:
    """One user's sequential story, spreading its requests over the gateways."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        gateways: list[str],
        tenant: str,
        ledger: Ledger,
        stop: asyncio.Event,
    ) -> None:
        self.session = session
        self.gateways = itertools.cycle(random.sample(gateways, len(gateways)))
        self.tenant = tenant
        self.token = f"load:{tenant}"
        self.ledger = ledger
        self.stop = stop

    async def run(self) -> None:
        while not self.stop.is_set():
            await self.lifecycle()

    async def lifecycle(self) -> None:
        """Boot a server, take it through the actions, delete it; give up on it when it
        does not reach a status in time (or the load is stopped)."""
        server_id = await self.create()
        if server_id is None or not await self.wait_for(server_id, "ACTIVE"):
            return
        for name, body, expect in _ACTIONS:
            if name == "resize" and random.random() < 0.5:
                break  # resizes are the slowest step: half the servers skip them
            if not await self.act(server_id, name, expect, body):
                return
        await self.act(server_id, "delete", "DELETED", None)

    async def act(self, server_id: str, name: str, expect: str, body: Any) -> bool:
        """Send the action until it is accepted (or the load stops), then wait for it."""
        while not self.stop.is_set():
            if name == "delete":
                status, _, request_id = await self.request("DELETE", f"/servers/{server_id}")
            else:
                status, _, request_id = await self.request(
                    "POST", f"/servers/{server_id}/action", body
                )
            self.write_down(status, name, expect, server_id=server_id, request_id=request_id)
            if 200 <= status < 300:
                return await self.wait_for(server_id, expect)
            if status == 404 or (status == 409 and await self.errored(server_id)):
                return False
            await asyncio.sleep(0.5)
        return False

    async def create(self) -> str | None:
        while not self.stop.is_set():
            # a new name for each attempt: the server of an attempt that got no answer
            # (if the gateway took it) is found by its name
            name = f"f{uuid.uuid4().hex[:12]}"
            body = {"server": {"name": name, "imageRef": IMAGE, "flavorRef": "1"}}
            status, reply, request_id = await self.request("POST", "/servers", body)
            server_id = str(reply["server"]["id"]) if 200 <= status < 300 else ""
            self.write_down(
                status, "create", "ACTIVE", server_id=server_id, request_id=request_id, name=name
            )
            if server_id:
                return server_id
            await asyncio.sleep(0.5)
        return None

    def write_down(
        self,
        status: int,
        action: str,
        expect: str,
        *,
        server_id: str,
        request_id: str,
        name: str = "",
    ) -> None:
        """Enter a request that asks for a change in the ledger, by its answer's ``status``."""
        if status != NO_ANSWER and not 200 <= status < 300:
            self.ledger.refused += 1
            return
        answered = status != NO_ANSWER
        self.ledger.sent.append(Sent(action, expect, answered, server_id, request_id, name))

    async def wait_for(self, server_id: str, expect: str) -> bool:
        """True once the server shows ``expect``; False on ERROR, timeout or stop."""
        deadline = time.monotonic() + _WAIT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            status, reply, _ = await self.request("GET", f"/servers/{server_id}")
            if status == 404:
                return expect == "DELETED"
            if status == 200:
                shown = reply["server"]["status"]
                if shown == expect:
                    return True
                if shown == "ERROR":
                    return False
            await asyncio.sleep(_POLL_S)
        return False

    async def errored(self, server_id: str) -> bool:
        status, reply, _ = await self.request("GET", f"/servers/{server_id}")
        return status == 200 and reply["server"]["status"] == "ERROR"

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, str]:
        """(status, JSON body, request id); the status is ``NOT_SENT`` when no connection
        could be made, ``NO_ANSWER`` when the request may have reached the gateway but no
        (whole) answer came back."""
        url = f"{next(self.gateways)}/v2/{self.tenant}{path}"
        headers = {"X-Auth-Token": self.token}
        try:
            async with self.session.request(
                method, url, json=body, headers=headers, timeout=_REQUEST_TIMEOUT
            ) as response:
                reply = None
                if response.content_type == "application/json":
                    reply = await response.json()
                request_id = response.headers.get("X-Compute-Request-Id", "")
                if response.status >= 500 and not _unavailable_fault(response.status, reply):
                    self.ledger.server_errors.append(
                        f"{method} {path}: {response.status} {str(reply)[:200]}"
                    )
                return response.status, reply, request_id
        except aiohttp.ClientConnectorError:
            # no connection was made, so the gateway never saw the request; unless aiohttp
            # had sent it already: an idempotent request (a DELETE) that is cut off is sent
            # once more on a new connection, and only that one's error is raised
            return (NO_ANSWER if method in IDEMPOTENT_METHODS else NOT_SENT), None, ""
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return NO_ANSWER, None, ""


def _unavailable_fault(status: int, reply: Any) -> bool:
    """A 503 whose body is a v2 fault (``{"serviceUnavailable": {"code": 503, ...}}``)."""
    if status != 503 or not isinstance(reply, dict) or len(reply) != 1:
        return False
    (fault,) = reply.values()
    return isinstance(fault, dict) and fault.get("code") == 503 and bool(fault.get("message"))


class Load:
    """``clients`` clients of one project running until ``stop``."""

    def __init__(self, gateways: list[str], tenant: str, clients: int) -> None:
        self.gateways = gateways
        self.tenant = tenant
        self.clients = clients
        self.ledger = Ledger()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.clients * 2, force_close=True)
        )
        for _ in range(self.clients):
            client = Client(self._session, self.gateways, self.tenant, self.ledger, self._stop)
            self._tasks.append(asyncio.create_task(client.run()))

    async def stop(self) -> None:
        """No new requests; requests under way are answered (or time out) first."""
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks)
        if self._session is not None:
            await self._session.close()
