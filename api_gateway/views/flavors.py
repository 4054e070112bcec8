"""Flavor representations (Ex 2.41–2.44)."""

from __future__ import annotations

from typing import Any

from api_gateway.views.links import resource_links
from shared.db.records import Flavor


def basic(row: Flavor, base: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "links": resource_links(base, tenant_id, "flavors", row.id),
    }


def detail(row: Flavor, base: str, tenant_id: str) -> dict[str, Any]:
    """A flavor as nova 2013.1 showed it with its flavor extensions loaded: ``swap``
    (os-flavor-swap: ``""`` for none, else MB), ``rxtx_factor`` (os-flavor-rxtx) and the
    prefixed members of OS-FLV-EXT-DATA, os-flavor-access and OS-FLV-DISABLED."""
    return {
        "id": row.id,
        "name": row.name,
        "ram": row.ram_mb,
        "disk": row.disk_gb,
        "vcpus": row.vcpus,
        "swap": row.swap_mb or "",
        "rxtx_factor": row.rxtx_factor,
        "OS-FLV-EXT-DATA:ephemeral": row.ephemeral_gb,
        "os-flavor-access:is_public": row.is_public,
        "OS-FLV-DISABLED:disabled": row.disabled,
        "links": resource_links(base, tenant_id, "flavors", row.id),
    }
