"""Raw requests in either format, and XML answers parsed, for tests of the XML forms."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.client import ComputeClient, Reply, check_answer

COMPUTE = "{http://docs.openstack.org/compute/api/v1.1}"
ATOM = "{http://www.w3.org/2005/Atom}"
SAMPLES = Path(__file__).resolve().parents[1] / "samples"  # the guide's (tests/samples)

XML = "application/xml"
JSON = "application/json"


@dataclass
class RawReply:
    status: int
    content_type: str
    text: str
    headers: Any

    @property
    def xml(self) -> ET.Element:
        assert self.content_type == XML, (self.status, self.content_type, self.text)
        return ET.fromstring(self.text)


def sample(name: str) -> str:
    """A sample body of the guide (or of ``nova-2013.1/``), verbatim."""
    return (SAMPLES / name).read_text()


async def send(
    client: ComputeClient,
    method: str,
    path: str,
    body: str | None = None,
    *,
    content_type: str = XML,
    accept: str = XML,
    check_schema: bool = True,
) -> RawReply:
    """``method path`` with ``body`` sent as is (``content_type``), asking for ``accept``.

    A JSON answer is checked against tempest's schema of the call, as the client's are
    (tests/support/client.py); ``check_schema=False`` skips that."""
    headers = {"X-Auth-Token": client.token, "Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    url = path if path.startswith("http") else f"{client.url}/v2/{client.tenant}{path}"
    data = body.encode() if body is not None else None
    async with client.session.request(method, url, data=data, headers=headers) as response:
        reply = RawReply(
            response.status, response.content_type, await response.text(), response.headers
        )
    if check_schema:
        is_json = reply.content_type == JSON
        answer = json.loads(reply.text) if is_json and reply.text.strip() else None
        parsed = Reply(reply.status, answer, reply.headers)
        check_answer(method, url, headers, None, data, parsed, is_json)
    return reply


def metas(element: ET.Element) -> dict[str, str]:
    """``{key: text}`` of the ``<meta>`` children of a ``<metadata>`` element."""
    return {m.attrib["key"]: m.text or "" for m in element.findall(f"{COMPUTE}meta")}
