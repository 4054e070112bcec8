"""The load a fault strikes: clients booting servers, acting on them and deleting them
through both gateways, writing down every request the API accepted and what it promised.

A request is *accepted* when the gateway answered 2xx: from then on the system owes its
outcome. A 503 (a dependency is down), a 409 (the server is busy, e.g. in ERROR) or a
connection error (the gateway was killed) is *refused*: nothing is owed. The clients wait
for each accepted action to show before the next (bounded); a server that does not get there
is left as it is, for the checks to judge.
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


@dataclass(frozen=True)
class Accepted:
    """A request the API accepted: which server, which request id, what it must end in."""

    action: str
    server_id: str
    request_id: str
    expect: str
    at: float


@dataclass
class Ledger:
    accepted: list[Accepted] = field(default_factory=list)
    refused: int = 0
    unanswered: int = 0


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
            if 200 <= status < 300:
                self.accept(name, server_id, request_id, expect)
                return await self.wait_for(server_id, expect)
            if status == 404 or (status == 409 and await self.errored(server_id)):
                return False
            await asyncio.sleep(0.5)
        return False

    async def create(self) -> str | None:
        body = {"server": {"name": f"f{uuid.uuid4().hex[:8]}", "imageRef": IMAGE, "flavorRef": "1"}}
        while not self.stop.is_set():
            status, reply, request_id = await self.request("POST", "/servers", body)
            if status == 202:
                server_id: str = reply["server"]["id"]
                self.accept("create", server_id, request_id, "ACTIVE")
                return server_id
            await asyncio.sleep(0.5)
        return None

    def accept(self, action: str, server_id: str, request_id: str, expect: str) -> None:
        self.ledger.accepted.append(
            Accepted(action, server_id, request_id, expect, time.monotonic())
        )

    async def wait_for(self, server_id: str, expect: str) -> bool:
        """True once the server shows ``expect``; False on ERROR, timeout or stop."""
        deadline = time.monotonic() + _WAIT_S
        while time.monotonic() < deadline and not self.stop.is_set():
            status, reply, _ = await self.request("GET", f"/servers/{server_id}", count=False)
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
        status, reply, _ = await self.request("GET", f"/servers/{server_id}", count=False)
        return status == 200 and reply["server"]["status"] == "ERROR"

    async def request(
        self, method: str, path: str, body: Any = None, *, count: bool = True
    ) -> tuple[int, Any, str]:
        """(status, JSON body, request id); status 0 when no answer came (refused)."""
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
                if count and not 200 <= response.status < 300:
                    self.ledger.refused += 1
                return response.status, reply, request_id
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            if count:
                self.ledger.unanswered += 1
            return 0, None, ""


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
