"""A small v2 client for tests that read like a user's story.

Every JSON answer it receives is checked against tempest's published v2.1 response schema
of its call (tests/support/schemas.py), so a test fails when Stratus answers something a
real client may not read, whatever the test itself looks at.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.support import schemas

#: Set to a file name to record every call the client makes (one JSON line each: the call,
#: its status, whether the answer was JSON, the schema that checked it, the failure), to
#: survey which calls of a suite have a schema (tests/support/schemas.py).
SURVEY_ENV = "STRATUS_SCHEMA_SURVEY"


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


class ComputeClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, tenant: str, user: str) -> None:
        self.session = session
        self.url = url
        self.tenant = tenant
        self.token = f"{user}:{tenant}"

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.url}/v2/{self.tenant}{path}"

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        data: bytes | None = None,
        check_schema: bool = True,
        authenticated: bool = True,
    ) -> Reply:
        """``body`` goes as JSON; ``data`` (with its Content-Type in ``headers``) as is.

        A success or redirection with a JSON body is checked against tempest's schema of the
        call (AssertionError when it does not match). ``check_schema=False`` skips that, for
        the few tests that deliberately send what no client would and may get an answer no
        schema describes. ``authenticated=False`` sends no token (the version documents).
        """
        url = self._url(path)
        all_headers = {**({"X-Auth-Token": self.token} if authenticated else {}), **(headers or {})}
        async with self.session.request(
            method,
            url,
            json=body if data is None else None,
            data=data,
            headers=all_headers,
        ) as response:
            answer: Any = None
            is_json = response.content_type == "application/json"
            if is_json:
                answer = await response.json()
            elif response.status != 204:
                answer = await response.text()
            reply = Reply(response.status, answer, response.headers)
        if check_schema:
            check_answer(method, url, all_headers, body, data, reply, is_json)
        return reply

    async def get(self, path: str) -> Reply:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any) -> Reply:
        return await self.request("POST", path, body)

    async def delete(self, path: str) -> Reply:
        return await self.request("DELETE", path)

    async def create_server(self, name: str, image: str, flavor: str = "1", **extra: Any) -> Reply:
        return await self.post(
            "/servers",
            {"server": {"name": name, "imageRef": image, "flavorRef": flavor, **extra}},
        )

    async def delete_and_wait(self, server_id: str) -> None:
        reply = await self.delete(f"/servers/{server_id}")
        assert reply.status == 204, reply
        await self.wait_for_status(server_id, "DELETED")

    async def wait_for_status(
        self, server_id: str, status: str, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Poll until the server shows ``status`` (``DELETED``: until it is gone)."""
        deadline = time.monotonic() + timeout_s
        last: Reply | None = None
        while time.monotonic() < deadline:
            last = await self.get(f"/servers/{server_id}")
            if status == "DELETED" and last.status == 404:
                return {}
            if last.status == 200 and last.body["server"]["status"] == status:
                server: dict[str, Any] = last.body["server"]
                return server
            await asyncio.sleep(0.05)
        raise AssertionError(f"server {server_id} never reached {status}; last: {last}")


def check_answer(
    method: str,
    url: str,
    request_headers: dict[str, str],
    body: Any,
    data: bytes | None,
    reply: Reply,
    is_json: bool,
) -> None:
    """Check ``reply`` to ``method url`` against tempest's schema of the call when it has a
    JSON body and asks for no microversion (AssertionError when it does not match), and note
    the call in the survey file when there is one. ``body``/``data``: the request's."""
    if schemas.asks_microversion(request_headers):
        return
    call = schemas.call_of(method, url, body, data)
    checked = is_json and reply.body is not None
    named: schemas.NamedSchema | None = None
    failure: str | None = None
    try:
        if checked:
            named = schemas.check_reply(call, reply.status, reply.body, reply.headers)
    except AssertionError as error:
        failure = str(error)
        raise
    finally:
        _survey(call, url, reply.status, checked, named, failure)


def _survey(
    call: schemas.Call | None,
    url: str,
    status: int,
    checked: bool,
    named: schemas.NamedSchema | None,
    failure: str | None,
) -> None:
    """One line of the survey file, when ``STRATUS_SCHEMA_SURVEY`` names one."""
    target = os.environ.get(SURVEY_ENV)
    if not target:
        return
    line = {
        "call": str(call) if call else f"{url.split('?')[0]} (no pattern)",
        "status": status,
        "json": checked,
        "schema": named.name if named else None,
        "failure": failure,
    }
    with open(target, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
