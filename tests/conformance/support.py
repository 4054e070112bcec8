"""What the conformance cases share: loading samples, calling the API raw, making servers."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from stratus.system import System
from tests.conftest import IMAGE

SAMPLES = Path(__file__).resolve().parents[1] / "samples"  # the guide's (tests/samples)

#: ids in the samples' requests, replaced by ids that exist here
_SAMPLE_IMAGE_IDS = (
    "70a599e0-31e7-49b7-b260-868f441e862b",
    "52415800-8b69-11e0-9b19-734f6f006e54",
)
_SAMPLE_FLAVOR_IDS = ("52415800-8b69-11e0-9b19-734f1195ff37",)


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _join_broken_strings(text: str) -> str:
    """The guide prints long base64 strings over several lines (docs/compatibility.md): join
    them."""
    lines: list[str] = []
    for line in text.splitlines():
        if lines and line.strip() and line.strip()[0] not in '"{}[]':
            lines[-1] = lines[-1].rstrip() + line.strip()
        else:
            lines.append(line)
    return "\n".join(lines)


def substitute_ids(text: str) -> str:
    for image_id in _SAMPLE_IMAGE_IDS:
        text = text.replace(image_id, IMAGE)
    for flavor_id in _SAMPLE_FLAVOR_IDS:
        text = re.sub(rf"(flavors/|\"|'){flavor_id}", r"\g<1>1", text)
    return text


def request_body(name: str) -> bytes:
    """A request sample, made sendable: broken strings joined, ids replaced."""
    text = (SAMPLES / name).read_text()
    if name.endswith(".json"):
        text = _join_broken_strings(text)
        json.loads(text)  # it must be valid now
    return substitute_ids(text).encode()


def sample_json(name: str) -> Any:
    return json.loads(_join_broken_strings((SAMPLES / name).read_text()))


@dataclass
class Raw:
    status: int
    content_type: str
    body: bytes
    headers: Any

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Env:
    http: aiohttp.ClientSession
    system: System
    tenant: str = field(default_factory=lambda: f"conf{uuid.uuid4().hex[:8]}")
    user: str = "alice"
    created: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.system.url

    @property
    def token(self) -> str:
        return f"{self.user}:{self.tenant}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        headers: dict[str, str] | None = None,
        token: bool = True,
    ) -> Raw:
        all_headers = dict(headers or {})
        if token:
            all_headers["X-Auth-Token"] = self.token
        if content_type:
            all_headers["Content-Type"] = content_type
        if accept:
            all_headers["Accept"] = accept
        url = path if path.startswith("http") else f"{self.url}{path}"
        async with self.http.request(method, url, data=body, headers=all_headers) as response:
            return Raw(
                response.status,
                response.content_type,
                await response.read(),
                response.headers,
            )

    def v2(self, path: str) -> str:
        return f"/v2/{self.tenant}{path}"

    async def server(self, **attributes: Any) -> str:
        """A new ACTIVE server of this project."""
        body = {
            "server": {"name": "conformance", "imageRef": IMAGE, "flavorRef": "1", **attributes}
        }
        reply = await self.call(
            "POST",
            self.v2("/servers"),
            body=json.dumps(body).encode(),
            content_type="application/json",
        )
        assert reply.status == 202, reply.body
        server_id: str = reply.json()["server"]["id"]
        self.created.append(server_id)
        await self.wait_for(server_id, "ACTIVE")
        return server_id

    async def wait_for(self, server_id: str, status: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reply = await self.call("GET", self.v2(f"/servers/{server_id}"))
            if reply.status == 200 and reply.json()["server"]["status"] == status:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{server_id} never reached {status}")

    async def cleanup(self) -> None:
        for server_id in self.created:
            await self.call("DELETE", self.v2(f"/servers/{server_id}"))
        for server_id in self.created:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if (await self.call("GET", self.v2(f"/servers/{server_id}"))).status == 404:
                    break
                await asyncio.sleep(0.05)
