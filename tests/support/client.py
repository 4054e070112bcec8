"""A small v2 client for tests that read like a user's story."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


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
    ) -> Reply:
        """``body`` goes as JSON; ``data`` (with its Content-Type in ``headers``) as is."""
        all_headers = {"X-Auth-Token": self.token, **(headers or {})}
        async with self.session.request(
            method,
            self._url(path),
            json=body if data is None else None,
            data=data,
            headers=all_headers,
        ) as response:
            data: Any = None
            if response.content_type == "application/json":
                data = await response.json()
            elif response.status != 204:
                data = await response.text()
            return Reply(response.status, data, response.headers)

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
