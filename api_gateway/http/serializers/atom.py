"""Atom feeds of the version resources (Ex 1.28, 1.32)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from api_gateway.http.serializers.xml import ATOM_NS, DECLARATION

AUTHOR = "<author><name>Stratus</name><uri>https://github.com/stratus-compute</uri></author>"


def _link(link: Mapping[str, str]) -> str:
    return "<link" + "".join(f" {k}={quoteattr(v)}" for k, v in link.items()) + "/>"


def _entry(version: Mapping[str, Any]) -> str:
    self_href = next(link["href"] for link in version["links"] if link["rel"] == "self")
    links = "".join(_link(link) for link in version["links"])
    summary = f"Version {version['id']} {version['status']} ({version['updated']})"
    return (
        f"<entry><id>{escape(self_href)}</id>"
        f'<title type="text">Version {escape(version["id"])}</title>'
        f"<updated>{escape(version['updated'])}</updated>{links}"
        f'<content type="text">{escape(summary)}</content></entry>'
    )


def feed(title: str, feed_id: str, versions: list[Mapping[str, Any]]) -> bytes:
    updated = max(v["updated"] for v in versions)
    body = (
        f'<feed xmlns="{ATOM_NS}"><title type="text">{escape(title)}</title>'
        f"<updated>{escape(updated)}</updated><id>{escape(feed_id)}</id>{AUTHOR}"
        f'<link rel="self" href={quoteattr(feed_id)}/>'
        + "".join(_entry(v) for v in versions)
        + "</feed>"
    )
    return (DECLARATION + body).encode()
