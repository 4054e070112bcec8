"""Extension representations (Ex 1.34–1.37)."""

from __future__ import annotations

from typing import Any

from api_gateway.extensions import Extension


def extension(ext: Extension) -> dict[str, Any]:
    return {
        "name": ext.name,
        "namespace": ext.namespace,
        "alias": ext.alias,
        "updated": ext.updated,
        "description": ext.description,
        "links": [dict(link) for link in ext.links],
    }
